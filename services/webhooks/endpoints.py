"""Registering, listing, removing and re-enabling an agency's webhook endpoints, and
their delivery logs (``hub webhook …`` and ``/v1/agencies/{id}/webhooks``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.application import AgencyRegistry
from services.errors import ServiceError
from services.store.webhooks import WebhookEndpoint
from services.webhooks import signing, targets

MAX_ENDPOINTS_PER_AGENCY = 10
_MESSAGE_TYPE = re.compile(r"^[a-z_]+\.[a-z_]+$")  # handover.offered
_EVENT_TYPE = re.compile(r"^[A-Z][A-Za-z]{2,63}$")  # HandoverOffered


class WebhookNotFound(ServiceError):
    code = "webhook_not_found"


class WebhookInvalid(ServiceError):
    code = "webhook_invalid"


def event_type(name: str) -> str:
    """A type as the feed names it: ``handover.offered`` → ``HandoverOffered``;
    ``expert_opinion.requested`` → ``ExpertOpinionRequested``."""
    if _EVENT_TYPE.match(name):
        return name
    if not _MESSAGE_TYPE.match(name):
        raise WebhookInvalid(f"not an event type: {name[:64]!r} (e.g. handover.offered)")
    words = name.replace(".", "_").split("_")
    *subject, verb = words
    return "".join(w.capitalize() for w in subject) + verb.capitalize()


class WebhookEndpoints:
    def __init__(
        self,
        store: Any,
        registry: AgencyRegistry,
        *,
        allow_private: bool,
        head: Callable[[], int],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._registry = registry
        self._allow_private = allow_private
        self._head = head
        self._clock = clock

    def add(
        self, agency: str, url: str, types: list[str] | None = None, *, from_start: bool = False
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its secret (shown once). It receives the events recorded
        from now on (``from_start``: the agency's whole feed)."""
        self._registry.get(agency)  # AgencyUnknown
        targets.parse(url, allow_private=self._allow_private)
        targets.resolve(url, allow_private=self._allow_private)
        if len(self._store.list_webhooks(agency)) >= MAX_ENDPOINTS_PER_AGENCY:
            raise WebhookInvalid(f"an agency has at most {MAX_ENDPOINTS_PER_AGENCY} endpoints")
        wanted = tuple(sorted({event_type(t.strip()) for t in types or [] if t.strip()}))
        secret = signing.new_secret()
        endpoint = WebhookEndpoint(
            endpoint_id="wh_" + secrets.token_hex(8),
            agency=agency,
            url=url,
            secret=secret,
            types=wanted,
            enabled=True,
            position=0 if from_start else self._head(),
            failures=0,
            retry_at=None,
            disabled_reason=None,
            created_at=self._clock().isoformat(timespec="microseconds"),
        )
        self._store.insert_webhook(endpoint)
        return endpoint, secret

    def listed(self, agency: str | None = None) -> list[WebhookEndpoint]:
        return list(self._store.list_webhooks(agency))

    def get(self, endpoint_id: str, agency: str | None = None) -> WebhookEndpoint:
        """The endpoint; to an agency, another agency's answers as an unknown one."""
        found = self._store.find_webhook(endpoint_id)
        if found is None or (agency is not None and found.agency != agency):
            raise WebhookNotFound(f"no webhook endpoint {endpoint_id[:64]}")
        return found

    def remove(self, endpoint_id: str, agency: str | None = None) -> None:
        self.get(endpoint_id, agency)
        self._store.delete_webhook(endpoint_id)

    def enable(self, endpoint_id: str, agency: str | None = None) -> WebhookEndpoint:
        """On again after it was disabled: retried at once, from where it stood."""
        found = self.get(endpoint_id, agency)
        self._store.set_webhook_state(
            endpoint_id,
            enabled=True,
            position=found.position,
            failures=0,
            retry_at=None,
            disabled_reason=None,
        )
        return self.get(endpoint_id)

    def deliveries(
        self, endpoint_id: str, agency: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        self.get(endpoint_id, agency)
        return list(self._store.list_webhook_deliveries(endpoint_id, limit))


def endpoints_for(hub: Any) -> WebhookEndpoints:
    """The endpoints of ``hub`` (a ``services.bootstrap.Hub``)."""
    return WebhookEndpoints(
        hub.app.store,
        hub.registry,
        allow_private=hub.settings.webhooks_allow_private,
        head=hub.views.position,
    )
