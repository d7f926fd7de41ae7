"""FHIR R4 resources from the hub's views: pure functions of plain dicts.

Every input is what ``ReadService`` already filtered for the caller (the case view,
the caller's part of a history): these functions only rename, never widen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from services.fhir.codes import (
    INPUT_DATA_CATEGORY,
    ISSUE_TYPE,
    SYSTEM_AGENCY,
    SYSTEM_DATA_CATEGORY,
    SYSTEM_ERROR,
    SYSTEM_EVENT_TYPE,
    SYSTEM_HANDOVER_KIND,
    SYSTEM_HANDOVER_STATE,
    SYSTEM_HASH_CHAIN,
    SYSTEM_INPUT_TYPE,
    TASK_STATUS,
)

SYSTEM_HANDOVER = "urn:handover-hub:handover"
SYSTEM_CONSENT = "urn:handover-hub:consent"
SYSTEM_AGENCY_KIND = "urn:handover-hub:fhir:agency-kind"
# Consent ids are the agencies' own (``:``/``_`` allowed), not FHIR ids: the
# resource id is derived from the case and the consent id, the original kept.
_CONSENT_NAMESPACE = UUID("5b0c9a5e-0f52-4c4e-9d8e-6f1f0c2b7a41")
# The events that decide a handover, and so carry its reason.
_DECISIONS = {"HandoverDeclined", "HandoverWithdrawn", "HandoverForwarded"}


# ---- references and ids -------------------------------------------------------------


def organization_ref(agency_id: str) -> dict[str, Any]:
    return {"reference": f"Organization/{agency_id}"}


def patient_ref(case_id: str) -> dict[str, Any]:
    """The participant as the case: pseudonymous, no name (the hub has no Patient
    resource; the reference names the case an agency already knows)."""
    return {"reference": f"Patient/{case_id}"}


def task_id(case_id: str, handover_id: str) -> str:
    """A Task's id: the case and the handover as 64 hex digits (FHIR's id limit), so
    a read finds the case without a scan and the disclosure check runs on it."""
    return UUID(case_id).hex + UUID(handover_id).hex


def parse_task_id(value: str) -> tuple[str, str] | None:
    """(case id, handover id) of a Task id, or None when it names none."""
    if len(value) != 64:
        return None
    try:
        return str(UUID(hex=value[:32])), str(UUID(hex=value[32:]))
    except ValueError:
        return None


def consent_id(case_id: str, hub_consent_id: str) -> str:
    return str(uuid5(_CONSENT_NAMESPACE, f"{case_id}/{hub_consent_id}"))


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return coding


def _latest(moments: Iterable[str | None]) -> str | None:
    known = [m for m in moments if m]
    return max(known, key=datetime.fromisoformat) if known else None


# ---- Task -----------------------------------------------------------------------------


def handover_events(items: Sequence[dict[str, Any]], handover_id: str) -> list[dict[str, Any]]:
    """The history items (already the caller's part) that concern ``handover_id``."""
    found = []
    for item in items:
        payload = item.get("payload") or {}
        if handover_id in (payload.get("handover_id"), payload.get("new_handover_id")):
            found.append(item)
    return found


def task(
    case_id: str, handover: dict[str, Any], events: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """A handover of the case view as a Task; ``events``: its history items (for the
    reason of a decision and the moments it changed)."""
    state = handover["state"]
    own = [
        e for e in events if (e.get("payload") or {}).get("handover_id") == handover["handover_id"]
    ]
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id(case_id, handover["handover_id"]),
        "identifier": [{"system": SYSTEM_HANDOVER, "value": handover["handover_id"]}],
        "status": TASK_STATUS[state],
        "businessStatus": {
            "coding": [_coding(SYSTEM_HANDOVER_STATE, state)],
            "text": state,
        },
        "intent": "order",
        "code": {"coding": [_coding(SYSTEM_HANDOVER_KIND, handover["kind"])]},
        "for": patient_ref(case_id),
        "requester": organization_ref(handover["from_agency"]),
        "owner": organization_ref(handover["to_agency"]),
    }
    recorded = _latest(e["recorded_at"] for e in events)
    if recorded is not None:
        resource["meta"] = {"lastUpdated": recorded}
    if handover.get("offered_at"):
        resource["authoredOn"] = handover["offered_at"]
    modified = _latest([handover.get("offered_at"), *(e["occurred_at"] for e in own)])
    if modified is not None:
        resource["lastModified"] = modified
    if handover.get("forwarded_from"):
        resource["basedOn"] = [
            {"reference": f"Task/{task_id(case_id, handover['forwarded_from'])}"}
        ]
    reason = next(
        (e["payload"].get("reason") for e in reversed(own) if e["type"] in _DECISIONS), None
    )
    if reason:
        resource["statusReason"] = {"text": reason}
    period = {
        key: value
        for key, value in (("start", handover.get("offered_at")), ("end", handover.get("due_at")))
        if value
    }
    if handover.get("due_at"):
        resource["restriction"] = {"period": period}
    categories = handover.get("data_categories") or []
    if categories:
        resource["input"] = [
            {
                "type": {"coding": [_coding(SYSTEM_INPUT_TYPE, INPUT_DATA_CATEGORY)]},
                "valueCode": category,
            }
            for category in categories
        ]
    if handover.get("forwarded_to"):
        resource["output"] = [
            {
                "type": {"coding": [_coding(SYSTEM_INPUT_TYPE, "forwarded-to")]},
                "valueReference": {
                    "reference": f"Task/{task_id(case_id, handover['forwarded_to'])}"
                },
            }
        ]
    return resource


def decided(seen: dict[str, Any], status: str, reason: str | None) -> dict[str, Any]:
    """The Task ``seen`` by the agency that just set ``status`` on it, when that
    decision took it out of its view (a declined offer's receiver)."""
    state = {v: k for k, v in TASK_STATUS.items() if k != "forwarded"}[status]
    changed = {
        **seen,
        "status": status,
        "businessStatus": {"coding": [_coding(SYSTEM_HANDOVER_STATE, state)], "text": state},
    }
    if reason:
        changed["statusReason"] = {"text": reason}
    return changed


# ---- Consent ----------------------------------------------------------------------------


def consent(case_id: str, granted: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A consent of the case view: the recipients as actors, the categories as the
    data classes, the validity as the period; revoked or expired is ``inactive``."""
    until = granted.get("valid_until")
    expired = until is not None and datetime.fromisoformat(until) <= now
    period = {"start": granted["valid_from"], **({"end": until} if until else {})}
    actors = [
        {
            "role": {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "CST",
                        "custodian",
                    )
                ]
            },
            "reference": organization_ref(granted["source_agency"]),
        },
        *(
            {
                "role": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "IRCP",
                            "information recipient",
                        )
                    ]
                },
                "reference": organization_ref(recipient),
            }
            for recipient in granted["recipients"]
        ),
    ]
    provision: dict[str, Any] = {
        "type": "permit",
        "period": period,
        "actor": actors,
        "class": [_coding(SYSTEM_DATA_CATEGORY, c) for c in granted["categories"]],
    }
    if granted.get("purpose"):
        provision["purpose"] = [{"display": granted["purpose"]}]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent_id(case_id, granted["consent_id"]),
        "identifier": [{"system": SYSTEM_CONSENT, "value": granted["consent_id"]}],
        "status": "inactive" if granted.get("revoked_at") or expired else "active",
        "scope": {
            "coding": [
                _coding(
                    "http://terminology.hl7.org/CodeSystem/consentscope",
                    "patient-privacy",
                    "Privacy Consent",
                )
            ]
        },
        "category": [{"coding": [_coding("http://loinc.org", "59284-0", "Patient Consent")]}],
        "patient": patient_ref(case_id),
        "dateTime": granted["valid_from"],
        "organization": [organization_ref(granted["granted_by"])],
        "provision": provision,
    }
    if granted.get("revoked_at"):
        # Who revoked and when: the decision FHIR's Consent has no element for.
        resource["extension"] = [
            {
                "url": "urn:handover-hub:fhir:consent-revoked-at",
                "valueDateTime": granted["revoked_at"],
            }
        ]
    if granted.get("document_ref"):
        resource["sourceReference"] = {"identifier": {"value": granted["document_ref"]}}
    return resource


# ---- AuditEvent -------------------------------------------------------------------------


def audit_event(case_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """A history item (an event or a recorded read) as an AuditEvent; its entry in
    the hash chain (position, hash, legal basis) as the second entity."""
    is_read = item["type"] == "CaseRead"
    who: dict[str, Any] = {"identifier": {"system": SYSTEM_AGENCY, "value": item["agency"]}}
    if item["agency"] != "auditor":
        who["reference"] = f"Organization/{item['agency']}"
    chain_details = [
        {"type": "position", "valueString": str(item["position"])},
        *(
            [{"type": "legal_basis", "valueString": item["legal_basis"]}]
            if item.get("legal_basis")
            else []
        ),
        *([{"type": "late_entry", "valueString": "true"}] if item.get("late_entry") else []),
        {"type": "payload", "valueString": json.dumps(item["payload"], ensure_ascii=False)},
    ]
    chain: dict[str, Any] = {
        "what": {"identifier": {"system": SYSTEM_HASH_CHAIN, "value": item["hash"] or "pending"}},
        "name": item["type"],
        "detail": chain_details,
    }
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"{UUID(case_id).hex}-{item['position']}",
        "type": _coding(SYSTEM_EVENT_TYPE, item["type"]),
        "action": "R" if is_read else "C",
        "recorded": item["recorded_at"],
        "outcome": "0",
        "agent": [{"who": who, "altId": item["actor"], "requestor": True}],
        "source": {"observer": {"display": "handover hub"}},
        "entity": [{"what": patient_ref(case_id)}, chain],
    }
    if item.get("occurred_at"):
        resource["period"] = {"start": item["occurred_at"]}
    return resource


# ---- Organization, CapabilityStatement, Bundle, OperationOutcome -----------------------


def organization(agency: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": agency["agency_id"],
        "identifier": [{"system": SYSTEM_AGENCY, "value": agency["agency_id"]}],
        "active": True,
        "type": [{"coding": [_coding(SYSTEM_AGENCY_KIND, agency["kind"])]}],
        "name": agency["name"],
    }


def bundle(
    entries: Sequence[dict[str, Any]], *, base: str, total: int, self_url: str, next_url: str | None
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in entries
        ],
    }


def operation_outcome(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """A refusal: the hub's stable code in ``issue[0].details.coding[0].code``; the
    schema's problems (``details`` of a hub error: path and problem) as diagnostics."""
    issue: dict[str, Any] = {
        "severity": "error",
        "code": ISSUE_TYPE.get(status, "processing"),
        "details": {"coding": [_coding(SYSTEM_ERROR, code)], "text": message},
    }
    if isinstance(details, list) and details:
        issue["diagnostics"] = "; ".join(
            f"{d.get('path')}: {d.get('problem')}" if isinstance(d, dict) else str(d)
            for d in details
        )
    return {"resourceType": "OperationOutcome", "issue": [issue]}


SEARCH_PARAMS = {
    "Task": ["owner", "requester", "status", "patient", "_lastUpdated", "_count", "_offset"],
    "Consent": ["patient", "_count", "_offset"],
    "AuditEvent": ["patient", "_count", "_offset"],
}


def capability_statement(software_version: str, now: datetime) -> dict[str, Any]:
    def param(name: str) -> dict[str, Any]:
        kind = {"_lastUpdated": "date", "status": "token"}.get(name, "reference")
        if name in ("_count", "_offset"):
            kind = "number"
        return {"name": name, "type": kind}

    resources = [
        {
            "type": "Task",
            "interaction": [
                {"code": c} for c in ("read", "search-type", "create", "update", "patch")
            ],
            "searchParam": [
                param(p) for p in SEARCH_PARAMS["Task"] if p not in ("_count", "_offset")
            ],
        },
        {
            "type": "Consent",
            "interaction": [{"code": "search-type"}],
            "searchParam": [param("patient")],
        },
        {
            "type": "AuditEvent",
            "interaction": [{"code": "search-type"}],
            "searchParam": [param("patient")],
        },
        {"type": "Organization", "interaction": [{"code": "read"}]},
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now.isoformat(),
        "kind": "instance",
        "software": {"name": "handover hub", "version": software_version},
        "implementation": {"description": "the handover hub's FHIR facade (docs/fhir.md)"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "description": "Authorization: Bearer TOKEN, the hub's agency and auditor "
                    "tokens; an agency sees what the disclosure rule lets it see.",
                },
                "resource": resources,
            }
        ],
    }


__all__ = [
    "audit_event",
    "bundle",
    "capability_statement",
    "consent",
    "handover_events",
    "operation_outcome",
    "organization",
    "parse_task_id",
    "task",
    "task_id",
]
