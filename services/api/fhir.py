"""The FHIR R4 facade (``/fhir/…``, ``application/fhir+json``): handovers as Task,
consents as Consent, history as AuditEvent, agencies as Organization.

Every resource is built from what ``ReadService`` gives the caller (the
disclosure-filtered case view, its part of the history), and every write goes
through ``MessageService`` as a message: the same rules, the same codes, answered
as an ``OperationOutcome``. The mapping itself is ``services.fhir``; docs/fhir.md.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from domain.errors import DomainError
from services.access import Principal
from services.api.context import ApiContext, api_of
from services.api.errors import ApiError, status_of
from services.api.messages import _read_limited
from services.api.reads import AGENCY_ID_PATTERN
from services.errors import AgencyUnknown, CaseNotFound, NotInvolved, ServiceError
from services.fhir import resources as fhir
from services.fhir.codes import FHIR_JSON
from services.fhir.task_input import (
    TaskRefused,
    decision_message,
    offered_message,
    requested_change,
    unchanged_elements,
)
from services.messages import MAX_MESSAGE_BYTES, MessageInvalid

router = APIRouter()

DEFAULT_COUNT = 20
MAX_COUNT = 100
CASELOAD_PAGE = 1000
# The routes are not in the OpenAPI document (``include_in_schema=False``): FHIR
# clients read the CapabilityStatement, and the answers are FHIR resources
# (validated by the FHIR models in tests), not the hub's schemas.


class _NotFound(Exception):
    """To the caller, this resource does not exist (unknown, or not its to see)."""


def _fhir(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _outcome(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: Any = None,
) -> Response:
    return _fhir(fhir.operation_outcome(status, code, message, details), status, headers)


async def _answer(request: Request, what: str, make: Callable[[], Awaitable[Response]]) -> Response:
    """``make``'s answer; every refusal as an OperationOutcome with the hub's code."""
    try:
        return await make()
    except (_NotFound, NotInvolved, CaseNotFound):
        return _outcome(404, "not_found", f"{what} does not exist")
    except ApiError as error:
        return _outcome(error.status, error.code, error.message, error.headers, error.details)
    except TaskRefused as error:
        return _outcome(error.status, error.code, error.message)
    except MessageInvalid as error:
        status = 413 if error.code == "too_large" else 422
        return _outcome(status, error.code, error.message, details=error.details)
    except (DomainError, ServiceError) as error:
        return _outcome(status_of(error), error.code, error.message)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _now() -> datetime:
    return datetime.now(UTC)


# ---- reads -----------------------------------------------------------------------------


@router.get("/fhir/metadata", include_in_schema=False)
async def metadata(request: Request) -> Response:
    """The CapabilityStatement (open, as FHIR servers serve it)."""
    return _fhir(fhir.capability_statement(request.app.version, _now()))


@router.get("/fhir/Organization/{agency_id}", include_in_schema=False)
async def organization(agency_id: str, request: Request) -> Response:
    async def make() -> Response:
        api = api_of(request)
        await api.auth.caller_of(request)
        registry = request.app.state.agencies
        if not _AGENCY_ID.match(agency_id):
            raise _NotFound
        try:
            agency = await api.blocking.run(registry.get, agency_id)
        except AgencyUnknown:
            raise _NotFound from None
        return _fhir(fhir.organization(agency))

    return await _answer(request, f"Organization {agency_id}", make)


async def _case_tasks(
    api: ApiContext, caller: Principal, case_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The case view and the Tasks of the handovers the caller sees in it."""
    view = await api.blocking.run(api.reads.case, caller, case_id)
    history = await api.blocking.run(api.reads.history, caller, case_id, None)
    items = history["items"]
    tasks = [
        fhir.task(case_id, h, fhir.handover_events(items, h["handover_id"]))
        for h in view["handovers"]
    ]
    return view, tasks


async def _one_task(api: ApiContext, caller: Principal, resource_id: str) -> dict[str, Any]:
    ids = fhir.parse_task_id(resource_id)
    if ids is None:
        raise _NotFound
    await api.views.reach_recorded()
    _, tasks = await _case_tasks(api, caller, ids[0])
    found = next((t for t in tasks if t["id"] == resource_id), None)
    if found is None:
        raise _NotFound
    return found


@router.get("/fhir/Task/{resource_id}", include_in_schema=False)
async def read_task(resource_id: str, request: Request) -> Response:
    async def make() -> Response:
        api = api_of(request)
        caller = await api.auth.caller_of(request)
        return _fhir(await _one_task(api, caller, resource_id))

    return await _answer(request, f"Task {resource_id}", make)


def _paging(request: Request) -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ApiError(422, "invalid_request", f"{name} is a whole number {low}..{high}")
        return int(raw)

    return number("_count", DEFAULT_COUNT, 1, MAX_COUNT), number("_offset", 0, 0, 10**9)


def _page(request: Request, found: list[dict[str, Any]]) -> Response:
    count, offset = _paging(request)
    base = _base(request)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
    path = str(request.url).split("?", 1)[0]
    self_url = f"{path}?{urlencode([*kept, ('_offset', str(offset))])}"
    more = offset + count < len(found)
    next_url = f"{path}?{urlencode([*kept, ('_offset', str(offset + count))])}" if more else None
    return _fhir(
        fhir.bundle(
            found[offset : offset + count],
            base=base,
            total=len(found),
            self_url=self_url,
            next_url=next_url,
        )
    )


class _NoMatch(Exception):
    """A search parameter that names nothing the hub can hold: no match."""


_AGENCY_ID = re.compile(AGENCY_ID_PATTERN)


def _reference_param(request: Request, name: str, kind: str) -> str | None:
    """The id a reference parameter names (``Kind/id`` or ``id``); ``_NoMatch`` for
    one that cannot be an agency or case id (so it never reaches a query)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = raw[len(kind) + 1 :] if raw.startswith(f"{kind}/") else raw
    if kind == "Patient":
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise _NoMatch from None
    if not _AGENCY_ID.match(value):
        raise _NoMatch
    return value


_DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


def _last_updated(request: Request) -> list[tuple[str, datetime]]:
    """The ``_lastUpdated`` bounds: (prefix, moment), e.g. ge2026-12-01T00:00:00Z."""
    bounds = []
    for raw in request.query_params.getlist("_lastUpdated"):
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in _DATE_PREFIXES else ("eq", raw)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ApiError(
                422,
                "invalid_request",
                "_lastUpdated is [ge|gt|le|lt|eq|ne] ISO 8601 with a timezone",
            )
        bounds.append((prefix, moment))
    return bounds


def _within(moment: str | None, bounds: list[tuple[str, datetime]]) -> bool:
    if not bounds:
        return True
    if moment is None:
        return False
    at = datetime.fromisoformat(moment)
    tests = {
        "eq": lambda b: at == b,
        "ne": lambda b: at != b,
        "gt": lambda b: at > b,
        "lt": lambda b: at < b,
        "ge": lambda b: at >= b,
        "le": lambda b: at <= b,
    }
    return all(tests[prefix](bound) for prefix, bound in bounds)


async def _candidate_cases(
    api: ApiContext, caller: Principal, patient: str | None, owner: str | None, statuses: set[str]
) -> list[str]:
    """The cases whose Tasks a search looks at: the one named, or the caller's open
    offers (for its own ``requested`` Tasks), else its caseload. An auditor names a
    patient or an owner (whose caseload it then reads, recorded as any read)."""
    if patient is not None:
        return [patient]
    agency = caller.subject
    if caller.is_auditor:
        if owner is None:
            raise ApiError(
                422, "invalid_request", "an auditor's Task search names patient or owner"
            )
        agency = owner
    if statuses == {"requested"} and owner == agency:
        inbox = await api.blocking.run(api.reads.inbox, caller, agency)
        return list(dict.fromkeys(item["case_id"] for item in inbox["items"]))
    cases: list[str] = []
    after: str | None = None
    while True:
        page = await api.blocking.run(api.reads.caseload, caller, agency, CASELOAD_PAGE, after)
        cases.extend(item["case_id"] for item in page["items"])
        after = page["next"]
        if after is None:
            return cases


@router.get("/fhir/Task", include_in_schema=False)
async def search_tasks(request: Request) -> Response:
    async def make() -> Response:
        api = api_of(request)
        caller = await api.auth.caller_of(request)
        _paging(request)  # refuse bad paging before any read
        try:
            owner = _reference_param(request, "owner", "Organization")
            requester = _reference_param(request, "requester", "Organization")
            patient = _reference_param(request, "patient", "Patient")
        except _NoMatch:
            return _page(request, [])
        raw_status = request.query_params.get("status")
        statuses = set(raw_status.split(",")) if raw_status else set()
        bounds = _last_updated(request)
        await api.views.reach_recorded()
        found: list[dict[str, Any]] = []
        for case_id in await _candidate_cases(api, caller, patient, owner, statuses):
            try:
                _, tasks = await _case_tasks(api, caller, case_id)
            except (NotInvolved, CaseNotFound):
                continue  # a patient the caller may not see: no match, as for none
            found.extend(
                t
                for t in tasks
                if (owner is None or t["owner"]["reference"] == f"Organization/{owner}")
                and (
                    requester is None or t["requester"]["reference"] == f"Organization/{requester}"
                )
                and (not statuses or t["status"] in statuses)
                and _within((t.get("meta") or {}).get("lastUpdated"), bounds)
            )
        found.sort(key=lambda t: (t.get("authoredOn") or "", t["id"]))
        return _page(request, found)

    return await _answer(request, "the search", make)


async def _patient_search(
    request: Request, build: Callable[[ApiContext, Principal, str], Awaitable[list[dict[str, Any]]]]
) -> Response:
    async def make() -> Response:
        api = api_of(request)
        caller = await api.auth.caller_of(request)
        _paging(request)
        try:
            patient = _reference_param(request, "patient", "Patient")
        except _NoMatch:
            return _page(request, [])
        if patient is None:
            raise ApiError(
                422, "invalid_request", "this search names a patient (Patient/<case id>)"
            )
        await api.views.reach_recorded()
        try:
            found = await build(api, caller, patient)
        except (NotInvolved, CaseNotFound):
            found = []  # unknown or not the caller's: an empty searchset, as for none
        return _page(request, found)

    return await _answer(request, "the search", make)


@router.get("/fhir/Consent", include_in_schema=False)
async def search_consents(request: Request) -> Response:
    async def build(api: ApiContext, caller: Principal, case_id: str) -> list[dict[str, Any]]:
        view = await api.blocking.run(api.reads.case, caller, case_id)
        now = _now()
        return [fhir.consent(case_id, c, now) for c in view["consents"]]

    return await _patient_search(request, build)


@router.get("/fhir/AuditEvent", include_in_schema=False)
async def search_audit_events(request: Request) -> Response:
    async def build(api: ApiContext, caller: Principal, case_id: str) -> list[dict[str, Any]]:
        history = await api.blocking.run(api.reads.history, caller, case_id, None)
        return [fhir.audit_event(case_id, item) for item in history["items"]]

    return await _patient_search(request, build)


# ---- writes ----------------------------------------------------------------------------


async def _body(request: Request, api: ApiContext) -> Any:
    declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if declared not in (FHIR_JSON, "application/json", "application/json-patch+json"):
        raise ApiError(
            415, "unsupported_media_type", f"send FHIR JSON as Content-Type: {FHIR_JSON}"
        )
    raw = await _read_limited(request, MAX_MESSAGE_BYTES, api.limits.read_timeout)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "invalid_json", "the body is not JSON") from None


def _agency_caller(caller: Principal) -> None:
    if caller.is_auditor:
        raise ApiError(403, "forbidden", "auditors do not offer or decide handovers")


@router.post("/fhir/Task", include_in_schema=False, status_code=201)
async def create_task(request: Request) -> Response:
    async def make() -> Response:
        api = api_of(request)
        caller = await api.auth.caller_of(request)
        _agency_caller(caller)
        body = await _body(request, api)
        message = offered_message(body, agency=caller.subject, actor=caller.acting)
        result = await api.blocking.run(api.messages.record_raw, message)
        await api.views.reach(result["position"])
        created = await _one_task(
            api, caller, fhir.task_id(result["case_id"], result["handover_id"])
        )
        location = f"{_base(request)}/Task/{created['id']}"
        status = 200 if result["duplicate"] else 201
        return _fhir(created, status, {"Location": location})

    return await _answer(request, "the Task's case", make)


async def _change_task(request: Request, resource_id: str, *, put: bool) -> Response:
    async def make() -> Response:
        api = api_of(request)
        caller = await api.auth.caller_of(request)
        _agency_caller(caller)
        body = await _body(request, api)
        # First whether the caller may see the Task at all: an outsider's change is
        # answered as for an unknown Task, before anything about its body.
        current = await _one_task(api, caller, resource_id)
        status, reason, sent = requested_change(body)
        if put and sent is not None:
            unchanged_elements(sent, current)
        if status == current["status"]:
            return _fhir(current)
        case_id, handover_id = fhir.parse_task_id(resource_id) or ("", "")
        message = decision_message(
            case_id=case_id,
            handover_id=handover_id,
            status=status,
            reason=reason,
            agency=caller.subject,
            actor=caller.acting,
            now=_now(),
        )
        result = await api.blocking.run(api.messages.record_raw, message)
        await api.views.reach(result["position"])
        try:
            return _fhir(await _one_task(api, caller, resource_id))
        except (_NotFound, NotInvolved):
            # Declining can take the caller out of the case (it no longer sees it):
            # the answer is the Task it saw, as its own decision left it.
            return _fhir(fhir.decided(current, status, reason))

    return await _answer(request, f"Task {resource_id}", make)


@router.patch("/fhir/Task/{resource_id}", include_in_schema=False)
async def patch_task(resource_id: str, request: Request) -> Response:
    return await _change_task(request, resource_id, put=False)


@router.put("/fhir/Task/{resource_id}", include_in_schema=False)
async def put_task(resource_id: str, request: Request) -> Response:
    return await _change_task(request, resource_id, put=True)


# Last, so every route above matches first: any other GET under /fhir/ answers as a
# FHIR server does, with an OperationOutcome (other methods keep the hub's 404/405).
@router.get("/fhir/{unknown:path}", include_in_schema=False)
async def unknown_resource(unknown: str) -> Response:
    return _outcome(404, "not_found", "no such FHIR resource or interaction here")
