"""An agency's own webhook endpoints over HTTP (``/v1/agencies/{id}/webhooks``): the
same operations as ``hub webhook …``, for the agency's token only. The secret is in
the answer to the POST that creates an endpoint, and nowhere else."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.access import Principal
from services.api.auth import Caller
from services.api.context import api_of
from services.api.errors import ApiError, documented
from services.api.reads import AgencyPath
from services.errors import AgencyUnknown
from services.webhooks.endpoints import WebhookEndpoints, WebhookInvalid, WebhookNotFound
from services.webhooks.targets import WebhookTargetRefused

router = APIRouter()
ERRORS = documented(401, 403, 404, 422)
EndpointPath = Annotated[
    str, PathParam(pattern=r"^wh_[0-9a-f]{16}$", description="a webhook endpoint id")
]


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2048, description="https://… on a public address")
    types: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, max_length=64, description="event types to deliver (e.g. handover.offered); all"
    )
    from_start: bool = Field(False, description="deliver the whole feed, not only new events")


def _endpoints(request: Request) -> WebhookEndpoints:
    endpoints: WebhookEndpoints = request.app.state.webhooks
    return endpoints


def _own(caller: Principal, agency_id: str) -> None:
    if caller.is_auditor or caller.subject != agency_id:
        raise ApiError(403, "forbidden", "an agency manages only its own webhook endpoints")


async def _call(request: Request, function: Any, *args: Any, **kwargs: Any) -> Any:
    api = api_of(request)
    try:
        return await api.blocking.run(lambda: function(*args, **kwargs))
    except WebhookNotFound as error:
        raise ApiError(404, error.code, str(error)) from None
    except (WebhookInvalid, WebhookTargetRefused) as error:
        raise ApiError(422, error.code, str(error)) from None
    except AgencyUnknown as error:
        raise ApiError(404, error.code, str(error)) from None


@router.get("/v1/agencies/{agency_id}/webhooks", responses=ERRORS)
async def list_webhooks(agency_id: AgencyPath, caller: Caller, request: Request) -> dict[str, Any]:
    _own(caller, agency_id)
    found = await _call(request, _endpoints(request).listed, agency_id)
    return {"items": [endpoint.public() for endpoint in found]}


@router.post("/v1/agencies/{agency_id}/webhooks", status_code=201, responses=ERRORS)
async def add_webhook(
    agency_id: AgencyPath, body: NewEndpoint, caller: Caller, request: Request
) -> JSONResponse:
    """A new endpoint; the answer holds its signing secret, shown this once."""
    _own(caller, agency_id)
    endpoint, secret = await _call(
        request,
        _endpoints(request).add,
        agency_id,
        body.url,
        body.types,
        from_start=body.from_start,
    )
    return JSONResponse({**endpoint.public(), "secret": secret}, status_code=201)


@router.delete("/v1/agencies/{agency_id}/webhooks/{endpoint_id}", status_code=204, responses=ERRORS)
async def remove_webhook(
    agency_id: AgencyPath, endpoint_id: EndpointPath, caller: Caller, request: Request
) -> Response:
    _own(caller, agency_id)
    await _call(request, _endpoints(request).remove, endpoint_id, agency_id)
    return Response(status_code=204)


@router.post("/v1/agencies/{agency_id}/webhooks/{endpoint_id}/enable", responses=ERRORS)
async def enable_webhook(
    agency_id: AgencyPath, endpoint_id: EndpointPath, caller: Caller, request: Request
) -> dict[str, Any]:
    _own(caller, agency_id)
    endpoint = await _call(request, _endpoints(request).enable, endpoint_id, agency_id)
    public: dict[str, Any] = endpoint.public()
    return public


@router.get("/v1/agencies/{agency_id}/webhooks/{endpoint_id}/deliveries", responses=ERRORS)
async def webhook_deliveries(
    agency_id: AgencyPath,
    endpoint_id: EndpointPath,
    caller: Caller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="newest first")] = 50,
) -> dict[str, Any]:
    _own(caller, agency_id)
    rows = await _call(request, _endpoints(request).deliveries, endpoint_id, agency_id, limit)
    return {"items": rows}
