"""The FHIR R4 facade over HTTP, on both stores (issue 16, build 3).

A clinic's hospital information system posts a discharge as a FHIR Task; the
Jobcenter finds it in its inbox and in a Task search, accepts it by PATCH; the
clinic reads the Task back as ``accepted``. An agency outside the case gets for
that Task exactly the answer for an unknown one. Every resource the facade returns
is parsed and validated by ``fhir.resources``' R4B models, not by our own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import demo_id, load_demo
from tests.http_helpers import Tokens, assert_no_leak, demo_tokens

CLINIC, JOBCENTER, OUTSIDER = "klinik-oder-spree", "jc-oder-spree", "jc-trier"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
KIND = "urn:handover-hub:fhir:handover-kind"
INPUT = "urn:handover-hub:fhir:task-input"


def validated(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` parsed by the R4B model of its resourceType (and a Bundle's entries
    each by theirs): a resource the models refuse fails the test."""
    model = get_fhir_model_class(body["resourceType"])
    model.model_validate(body)
    for entry in body.get("entry") or []:
        validated(entry["resource"])
    return body


def fhir_answer(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert_no_leak(response)
    return validated(response.json())


def refusal(response: Any, status: int, code: str) -> dict[str, Any]:
    body = fhir_answer(response, status)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == code, body
    return body


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


def send(
    api: TestClient, tokens: Tokens, agency: str, type_: str, case_id: str, payload: Any
) -> None:
    message = {
        "message_id": str(uuid4()),
        "type": type_,
        "agency": agency,
        "case_id": case_id,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "actor": "sozialdienst-1",
        "payload": payload,
    }
    response = api.post("/v1/messages", json=message, headers=tokens.of(agency))
    assert response.status_code == 201, response.text


def opened_with_consent(api: TestClient, tokens: Tokens) -> str:
    """A G-A-L case the clinic opened, with the participant's consent for the
    Jobcenter (through /v1/messages, as the clinic's other messages go)."""
    case_id = str(uuid4())
    send(api, tokens, CLINIC, "case.opened", case_id, {
        "programme": "G-A-L",
        "participant": {"pseudonym": "GAL-F1", "name": "Erika Musterfrau"},
    })  # fmt: skip
    now = datetime.now(UTC)
    send(api, tokens, CLINIC, "consent.granted", case_id, {
        "consent_id": "gal-f1-klinik-jc",
        "categories": ["health", "contact"],
        "source_agency": CLINIC,
        "recipients": [JOBCENTER],
        "valid_from": (now - timedelta(hours=1)).isoformat(),
        "valid_until": (now + timedelta(days=365)).isoformat(),
    })  # fmt: skip
    return case_id


# Per case, taken when its first Task is built (after the case opened, five minutes
# back): a repeat of the same Task carries the same moment. Not at import: a long
# run reaches these tests minutes after collection, before the case's opening.
_AUTHORED: dict[str, str] = {}


def discharge_task(case_id: str, key: str = "his-4711") -> dict[str, Any]:
    """What a hospital information system posts: a Task for the discharge."""
    return {
        "resourceType": "Task",
        "authoredOn": _AUTHORED.setdefault(
            case_id, (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        ),
        "identifier": [{"system": "urn:oid:1.2.276.0.76.4711", "value": key}],
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": KIND, "code": "discharge"}]},
        "for": {"reference": f"Patient/{case_id}"},
        "requester": {"reference": f"Organization/{CLINIC}"},
        "owner": {"reference": f"Organization/{JOBCENTER}"},
        "reasonCode": {"text": "Entlassung in zehn Tagen geplant"},
        "input": [
            {"type": {"coding": [{"system": INPUT, "code": "data-category"}]}, "valueCode": c}
            for c in ("health", "contact")
        ],
    }


def post_task(api: TestClient, tokens: Tokens, body: dict[str, Any], agency: str = CLINIC) -> Any:
    return api.post("/fhir/Task", json=body, headers={**tokens.of(agency), **FHIR_JSON})


def test_a_clinics_discharge_task_is_accepted_by_the_jobcenter(
    api: TestClient, tokens: Tokens
) -> None:
    case_id = opened_with_consent(api, tokens)
    created = fhir_answer(post_task(api, tokens, discharge_task(case_id)), 201)
    assert created["status"] == "requested"
    assert created["owner"] == {"reference": f"Organization/{JOBCENTER}"}
    assert created["for"] == {"reference": f"Patient/{case_id}"}
    assert created["restriction"]["period"]["end"]  # the policy's deadline
    task_id = created["id"]
    # Posted again (the system retries): the same Task, nothing recorded twice.
    again = fhir_answer(post_task(api, tokens, discharge_task(case_id)), 200)
    assert again["id"] == task_id
    # The same key of the clinic's system for another patient is another Task.
    other_case = opened_with_consent(api, tokens)
    other = fhir_answer(post_task(api, tokens, discharge_task(other_case)), 201)
    assert other["identifier"][0]["value"] != created["identifier"][0]["value"]

    inbox = api.get(f"/v1/agencies/{JOBCENTER}/inbox", headers=tokens.of(JOBCENTER)).json()
    (item,) = [i for i in inbox["items"] if i["case_id"] == case_id]
    assert item["kind"] == "discharge"
    assert item["from_agency"] == CLINIC
    assert created["identifier"][0]["value"] == item["handover_id"]

    search = fhir_answer(
        api.get(
            "/fhir/Task",
            params={"owner": f"Organization/{JOBCENTER}", "status": "requested"},
            headers=tokens.of(JOBCENTER),
        ),
        200,
    )
    assert search["type"] == "searchset"
    assert {e["resource"]["id"] for e in search["entry"]} == {task_id, other["id"]}

    accepted = fhir_answer(
        api.patch(
            f"/fhir/Task/{task_id}",
            json=[{"op": "replace", "path": "/status", "value": "accepted"}],
            headers={**tokens.of(JOBCENTER), "Content-Type": "application/json-patch+json"},
        ),
        200,
    )
    assert accepted["status"] == "accepted"

    seen = fhir_answer(api.get(f"/fhir/Task/{task_id}", headers=tokens.of(CLINIC)), 200)
    assert seen["status"] == "accepted"
    assert seen["businessStatus"]["text"] == "accepted"
    # No longer requested: out of the Jobcenter's requested search.
    after = fhir_answer(
        api.get(
            "/fhir/Task",
            params={"owner": f"Organization/{JOBCENTER}", "status": "requested"},
            headers=tokens.of(JOBCENTER),
        ),
        200,
    )
    assert [e["resource"]["id"] for e in after["entry"]] == [other["id"]]


def test_an_outsider_gets_the_answer_for_an_unknown_task(api: TestClient, tokens: Tokens) -> None:
    case_id = opened_with_consent(api, tokens)
    task_id = fhir_answer(post_task(api, tokens, discharge_task(case_id)), 201)["id"]
    unknown = str(uuid4()).replace("-", "") + str(uuid4()).replace("-", "")
    outsider = tokens.of(OUTSIDER)

    answers = []
    for target in (task_id, unknown):
        read = refusal(api.get(f"/fhir/Task/{target}", headers=outsider), 404, "not_found")
        patched = refusal(
            api.patch(
                f"/fhir/Task/{target}",
                json={"resourceType": "Task", "status": "accepted"},
                headers={**outsider, **FHIR_JSON},
            ),
            404,
            "not_found",
        )
        answers.append(
            [body["issue"][0]["details"]["text"].replace(target, "X") for body in (read, patched)]
        )
    assert answers[0] == answers[1]
    # Nor does a search by the case show it.
    search = fhir_answer(
        api.get("/fhir/Task", params={"patient": f"Patient/{case_id}"}, headers=outsider), 200
    )
    assert search["total"] == 0
    # And the Task is still requested: the outsider's PATCH recorded nothing.
    assert (
        fhir_answer(api.get(f"/fhir/Task/{task_id}", headers=tokens.of(CLINIC)), 200)["status"]
        == "requested"
    )


def test_refusals_are_operation_outcomes_with_the_hubs_codes(
    api: TestClient, tokens: Tokens
) -> None:
    case_id = opened_with_consent(api, tokens)
    # Without a token.
    refusal(api.get("/fhir/Task"), 401, "unauthenticated")
    # As another agency than the token's.
    body = discharge_task(case_id)
    body["requester"] = {"reference": "Organization/klinik-erzgebirge"}
    refusal(post_task(api, tokens, body), 403, "agency_mismatch")
    # Without the moment of the offer (a retry could not be the same message).
    body = discharge_task(case_id)
    del body["authoredOn"]
    refusal(post_task(api, tokens, body), 422, "invalid_request")
    # Categories the consent does not cover: the domain's rule, its code.
    body = discharge_task(case_id, key="his-4712")
    body["input"].append(
        {"type": {"coding": [{"system": INPUT, "code": "data-category"}]}, "valueCode": "benefits"}
    )
    refusal(post_task(api, tokens, body), 409, "consent_missing")
    # Declining needs a reason (the message schema's rule).
    task_id = fhir_answer(post_task(api, tokens, discharge_task(case_id)), 201)["id"]
    refusal(
        api.patch(
            f"/fhir/Task/{task_id}",
            json={"resourceType": "Task", "status": "rejected"},
            headers={**tokens.of(JOBCENTER), **FHIR_JSON},
        ),
        422,
        "schema_invalid",
    )
    # The sender cannot accept its own offer.
    refusal(
        api.patch(
            f"/fhir/Task/{task_id}",
            json={"resourceType": "Task", "status": "accepted"},
            headers={**tokens.of(CLINIC), **FHIR_JSON},
        ),
        409,
        "not_receiver",
    )
    # Declined with a reason: rejected, the reason as statusReason.
    declined = fhir_answer(
        api.put(
            f"/fhir/Task/{task_id}",
            json={
                "resourceType": "Task",
                "status": "rejected",
                "statusReason": {"text": "nicht zuständig"},
                "owner": {"reference": f"Organization/{JOBCENTER}"},
            },
            headers={**tokens.of(JOBCENTER), **FHIR_JSON},
        ),
        200,
    )
    assert declined["status"] == "rejected"
    assert declined["statusReason"]["text"] == "nicht zuständig"


def test_metadata_organization_consent_and_audit_events_validate(
    api: TestClient, tokens: Tokens
) -> None:
    case_id = opened_with_consent(api, tokens)
    fhir_answer(post_task(api, tokens, discharge_task(case_id)), 201)

    capability = fhir_answer(api.get("/fhir/metadata"), 200)
    assert capability["resourceType"] == "CapabilityStatement"
    organization = fhir_answer(
        api.get(f"/fhir/Organization/{JOBCENTER}", headers=tokens.of(CLINIC)), 200
    )
    assert organization["name"] == "Jobcenter Oder-Spree"
    refusal(api.get("/fhir/Organization/nobody", headers=tokens.of(CLINIC)), 404, "not_found")

    consents = fhir_answer(
        api.get("/fhir/Consent", params={"patient": case_id}, headers=tokens.of(JOBCENTER)), 200
    )
    (consent,) = [e["resource"] for e in consents["entry"]]
    assert consent["status"] == "active"
    assert {c["code"] for c in consent["provision"]["class"]} == {"health", "contact"}
    actors = [a["reference"]["reference"] for a in consent["provision"]["actor"]]
    assert f"Organization/{JOBCENTER}" in actors

    events = fhir_answer(
        api.get(
            "/fhir/AuditEvent",
            params={"patient": f"Patient/{case_id}", "_count": "2"},
            headers=tokens.audit(),
        ),
        200,
    )
    assert len(events["entry"]) == 2
    assert events["total"] > 2
    (next_link,) = [link["url"] for link in events["link"] if link["relation"] == "next"]
    following = fhir_answer(api.get(next_link, headers=tokens.audit()), 200)
    assert following["entry"]
    first_ids = {e["resource"]["id"] for e in events["entry"]}
    assert first_ids.isdisjoint(e["resource"]["id"] for e in following["entry"])
    offered = [
        e["resource"]
        for e in [*events["entry"], *following["entry"]]
        if e["resource"]["type"]["code"] == "HandoverOffered"
    ]
    assert offered
    # Nothing personal for an outsider: an empty searchset, as for an unknown case.
    outsider = fhir_answer(
        api.get("/fhir/AuditEvent", params={"patient": case_id}, headers=tokens.of(OUTSIDER)), 200
    )
    assert outsider["total"] == 0
    assert "Erika" not in str(outsider)


def test_a_forwarded_handover_is_a_rejected_task_and_the_next_is_based_on_it(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    """DOMAIN scenario 2 (§ 14 SGB IX): the Agentur für Arbeit forwards the
    rehabilitation application to the DRV, which accepts it."""
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    case_id = str(demo_id("s2/case"))
    search = fhir_answer(
        api.get("/fhir/Task", params={"patient": case_id}, headers=tokens.audit()), 200
    )
    tasks = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in search["entry"]}
    first, second = tasks[str(demo_id("s2/reha-1"))], tasks[str(demo_id("s2/reha-2"))]
    assert first["status"] == "rejected"
    assert first["businessStatus"]["text"] == "forwarded"
    assert first["statusReason"]["text"]  # the forwarding's reason, from the history
    assert second["basedOn"] == [{"reference": f"Task/{first['id']}"}]
    assert first["output"][0]["valueReference"] == {"reference": f"Task/{second['id']}"}
    assert second["status"] == "completed"  # accepted, later completed
    # The receiving agency sees the chain it is part of, and the same Tasks.
    drv = fhir_answer(
        api.get("/fhir/Task", params={"patient": case_id}, headers=tokens.of("drv-rlp")), 200
    )
    assert {e["resource"]["id"] for e in drv["entry"]} >= {first["id"], second["id"]}


def test_the_sender_withdraws_and_the_reason_comes_from_the_history(
    api: TestClient, tokens: Tokens
) -> None:
    case_id = opened_with_consent(api, tokens)
    task_id = fhir_answer(post_task(api, tokens, discharge_task(case_id)), 201)["id"]
    withdrawn = fhir_answer(
        api.patch(
            f"/fhir/Task/{task_id}",
            json=[
                {"op": "replace", "path": "/status", "value": "cancelled"},
                {"op": "add", "path": "/statusReason", "value": {"text": "Entlassung verschoben"}},
            ],
            headers={**tokens.of(CLINIC), "Content-Type": "application/json-patch+json"},
        ),
        200,
    )
    assert withdrawn["status"] == "cancelled"
    assert withdrawn["statusReason"] == {"text": "Entlassung verschoben"}
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    search = fhir_answer(
        api.get(
            "/fhir/Task",
            params={"requester": f"Organization/{CLINIC}", "_lastUpdated": f"ge{since}"},
            headers=tokens.of(CLINIC),
        ),
        200,
    )
    assert [e["resource"]["status"] for e in search["entry"]] == ["cancelled"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = fhir_answer(
        api.get("/fhir/Task", params={"_lastUpdated": f"ge{later}"}, headers=tokens.of(CLINIC)),
        200,
    )
    assert none["total"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/fhir/Task", b"{not json", FHIR_JSON, 422, "invalid_json"),
        ("POST", "/fhir/Task", b"[1, 2]", FHIR_JSON, 422, "invalid_request"),
        ("POST", "/fhir/Task", b'{"resourceType": "Patient"}', FHIR_JSON, 422, "invalid_request"),
        (
            "POST",
            "/fhir/Task",
            b"{}",
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ("POST", "/fhir/Task", b"x" * 70_000, FHIR_JSON, 413, "too_large"),
        ("GET", "/fhir/Task?_count=0", None, {}, 422, "invalid_request"),
        ("GET", "/fhir/Task?_count=abc", None, {}, 422, "invalid_request"),
        ("GET", "/fhir/Task?_lastUpdated=ge2026-12-01", None, {}, 422, "invalid_request"),
        ("GET", "/fhir/Task?_lastUpdated=gestern", None, {}, 422, "invalid_request"),
        ("GET", "/fhir/Task/..%2F..%2Fetc", None, {}, 404, "not_found"),
        ("GET", "/fhir/Task/" + "z" * 64, None, {}, 404, "not_found"),
        ("GET", "/fhir/Consent", None, {}, 422, "invalid_request"),
        ("GET", "/fhir/AuditEvent?patient=not-a-uuid", None, {}, 200, None),
        ("GET", "/fhir/Task?patient=Patient/not-a-uuid", None, {}, 200, None),
        ("GET", "/fhir/Consent?patient=%00", None, {}, 200, None),
        ("GET", "/fhir/Organization/%00", None, {}, 404, "not_found"),
        ("PATCH", "/fhir/Task/" + "0" * 64, b'{"status": 3}', FHIR_JSON, 404, "not_found"),
    ],
)
def test_hostile_fhir_requests_get_operation_outcomes(
    api: TestClient,
    tokens: Tokens,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    response = api.request(method, path, content=body, headers={**tokens.of(CLINIC), **headers})
    if code is None:
        assert fhir_answer(response, status)["total"] == 0
    else:
        refusal(response, status, code)


def test_a_status_patch_with_a_bad_body_is_refused_after_the_visibility_check(
    api: TestClient, tokens: Tokens
) -> None:
    case_id = opened_with_consent(api, tokens)
    task_id = fhir_answer(post_task(api, tokens, discharge_task(case_id)), 201)["id"]
    jobcenter = {**tokens.of(JOBCENTER), **FHIR_JSON}
    for body, status, code in [
        ({"resourceType": "Task", "status": 3}, 422, "invalid_request"),
        ([{"op": "remove", "path": "/status"}], 422, "invalid_request"),
        ([{"op": "replace", "path": "/owner", "value": {}}], 422, "invalid_request"),
        ({"resourceType": "Task", "status": "in-progress"}, 409, "invalid_transition"),
    ]:
        refusal(api.patch(f"/fhir/Task/{task_id}", json=body, headers=jobcenter), status, code)
    refusal(
        api.put(
            f"/fhir/Task/{task_id}",
            json={
                "resourceType": "Task",
                "status": "accepted",
                "owner": {"reference": "Organization/x"},
            },
            headers=jobcenter,
        ),
        422,
        "invalid_request",
    )
    # Auditors read, they do not decide.
    refusal(
        api.patch(
            f"/fhir/Task/{task_id}",
            json={"resourceType": "Task", "status": "accepted"},
            headers={**tokens.audit(), **FHIR_JSON},
        ),
        403,
        "forbidden",
    )
