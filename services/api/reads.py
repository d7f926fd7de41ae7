"""An agency's inbox and caseload, a case, its history, and the audit chain's check."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from datetime import date, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import BeforeValidator

from services.api.auth import Caller
from services.api.context import api_of
from services.api.errors import READ_ERRORS, ApiError, documented
from services.api.models import CaseHistory, Caseload, CaseView, Inbox, Verified, typed
from services.errors import CaseNotFound, NotInvolved

router = APIRouter()

# Agency ids as the message schema defines them; anything else cannot name an agency.
AGENCY_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
AgencyPath = Annotated[str, PathParam(pattern=AGENCY_ID_PATTERN, description="an agency id")]

# A date and a time, as ISO 8601 writes them; pydantic alone would also take a bare
# number as a Unix time (``as_of=1700000000``), which no auditor means.
_ISO_8601_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_8601_only(value: object) -> object:
    if isinstance(value, str) and _ISO_8601_DATE_TIME.match(value):
        return value
    raise ValueError(
        "as_of is an ISO 8601 date and time with a timezone, e.g. 2026-12-01T00:00:00Z"
    )


AsOf = Annotated[
    datetime | None,
    BeforeValidator(_iso_8601_only),
    Query(description="ISO 8601 with timezone, e.g. 2026-12-01T00:00:00Z"),
]


async def unless_uninvolved(case_id: uuid.UUID, read: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """To an agency, a case it is not involved in answers as an unknown one (same
    status, code and message: issue 13, finding 6); auditors see every case."""
    try:
        return await read
    except NotInvolved:
        raise CaseNotFound(f"case {case_id} does not exist") from None


@router.get("/v1/agencies/{agency_id}/inbox", responses=READ_ERRORS, **typed(Inbox))
async def inbox(agency_id: AgencyPath, caller: Caller, request: Request) -> dict[str, Any]:
    api = api_of(request)
    return await api.blocking.run(api.reads.inbox, caller, agency_id)


@router.get("/v1/agencies/{agency_id}/cases", responses=READ_ERRORS, **typed(Caseload))
async def caseload(
    agency_id: AgencyPath,
    caller: Caller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 200,
    after: Annotated[uuid.UUID | None, Query(description="the `next` of the previous page")] = None,
) -> dict[str, Any]:
    api = api_of(request)
    return await api.blocking.run(
        api.reads.caseload, caller, agency_id, limit, str(after) if after else None
    )


@router.get("/v1/cases/{case_id}", responses=READ_ERRORS, **typed(CaseView))
async def case(case_id: uuid.UUID, caller: Caller, request: Request) -> dict[str, Any]:
    api = api_of(request)
    return await unless_uninvolved(case_id, api.blocking.run(api.reads.case, caller, str(case_id)))


@router.get("/v1/cases/{case_id}/history", responses=READ_ERRORS, **typed(CaseHistory))
async def history(
    case_id: uuid.UUID,
    caller: Caller,
    request: Request,
    as_of: AsOf = None,
) -> dict[str, Any]:
    api = api_of(request)
    if as_of is not None and as_of.tzinfo is None:
        raise ApiError(422, "invalid_request", "as_of needs a timezone")
    # Items come from the event store, their hash and legal basis from the audit
    # view: let the view reach what is recorded now (e.g. the caller's own earlier
    # read), or those fields would be missing for the newest events.
    await api.views.reach_recorded()
    return await unless_uninvolved(
        case_id, api.blocking.run(api.reads.history, caller, str(case_id), as_of)
    )


@router.get("/v1/audit/reads", responses=documented(401, 403))
async def audit_reads(
    caller: Caller,
    request: Request,
    day: Annotated[date, Query(description="a UTC day, YYYY-MM-DD")],
) -> dict[str, Any]:
    """Auditors: the recorded reads of inboxes, caseloads and dashboards on ``day``."""
    api = api_of(request)
    if not caller.is_auditor:
        raise ApiError(403, "forbidden", "only auditors read the read log")
    return await api.blocking.run(api.reads.reads_of_day, caller, day)


@router.get("/v1/audit/verify", responses=documented(401, 403), **typed(Verified))
async def audit_verify(caller: Caller, request: Request) -> dict[str, Any]:
    api = api_of(request)
    if not caller.is_auditor:
        raise ApiError(403, "forbidden", "only auditors verify the audit trail")
    # Verify up to what is recorded now (e.g. the auditor's own reads just before),
    # not against an audit view that is still applying them.
    await api.views.reach_recorded()
    return await api.blocking.run(api.reads.verify, caller)


# ---- for the pages (issue 15): who is calling, the registry, the auditor's search,
# the replay, one case's chain check, what an agency may do to its handovers ----


@router.get("/v1/me", responses=documented(401))
async def me(caller: Caller, request: Request) -> dict[str, Any]:
    """Who this token speaks for: role, agency id (none for auditors), display name,
    user."""
    return api_of(request).reads.me(caller)


@router.get("/v1/agencies", responses=documented(401))
async def agencies(caller: Caller, request: Request) -> dict[str, Any]:
    """The agency registry: id, kind and display name of each (any token)."""
    api = api_of(request)
    return await api.blocking.run(api.reads.agencies, caller)


@router.get("/v1/audit/cases", responses=documented(401, 403, 422))
async def audit_cases(
    caller: Caller,
    request: Request,
    pseudonym: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="the participant's pseudonym"),
    ] = None,
    case_id: Annotated[uuid.UUID | None, Query(description="a case id")] = None,
) -> dict[str, Any]:
    """Auditors: the cases with this pseudonym (exact, ignoring case) or id; each case
    found records a read of it, a search that finds none a read in the day's log."""
    api = api_of(request)
    if not caller.is_auditor:
        raise ApiError(403, "forbidden", "only auditors search cases")
    if (pseudonym is None) == (case_id is None):
        raise ApiError(422, "invalid_request", "give either pseudonym or case_id")
    return await api.blocking.run(
        partial(
            api.reads.search_cases,
            caller,
            pseudonym=pseudonym,
            case_id=str(case_id) if case_id else None,
        )
    )


@router.get("/v1/cases/{case_id}/replay", responses=READ_ERRORS)
async def replay(
    case_id: uuid.UUID,
    caller: Caller,
    request: Request,
    as_of: Annotated[datetime | None, Query(description="ISO 8601 with timezone")] = None,
    axis: Annotated[
        Literal["recorded", "occurred"],
        Query(description="recorded: the hub's clock (default); occurred: the agencies'"),
    ] = "recorded",
) -> dict[str, Any]:
    """``hub replay --json``: the events up to ``as_of`` and the case state they make,
    each consent marked ``in_force`` then; for an agency its part, as the disclosure
    rule of that moment allows. Recorded as a read."""
    api = api_of(request)
    if as_of is not None and as_of.tzinfo is None:
        raise ApiError(422, "invalid_request", "as_of needs a timezone")
    await api.views.reach_recorded()
    return await api.blocking.run(api.reads.replay_state, caller, str(case_id), as_of, axis)


@router.get("/v1/audit/cases/{case_id}/verify", responses=READ_ERRORS)
async def audit_case_verify(case_id: uuid.UUID, caller: Caller, request: Request) -> dict[str, Any]:
    """Auditors: this case's audit entries recomputed from the stored events, with the
    newest checkpoint of the whole chain. Recorded as a read."""
    api = api_of(request)
    if not caller.is_auditor:
        raise ApiError(403, "forbidden", "only auditors verify the audit trail")
    await api.views.reach_recorded()
    return await api.blocking.run(api.reads.verify_case, caller, str(case_id))


@router.get("/v1/cases/{case_id}/actions", responses=READ_ERRORS)
async def handover_actions(case_id: uuid.UUID, caller: Caller, request: Request) -> dict[str, Any]:
    """An agency: what it may do now to each handover it receives in this case
    (``accept``, ``decline``, ``forward`` with its possible receivers, ``complete``,
    ``decide`` for a § 14 application),
    by a dry run of each message under the rules that decide it."""
    api = api_of(request)
    await api.views.reach_recorded()
    return await api.blocking.run(api.reads.handover_actions, caller, str(case_id))
