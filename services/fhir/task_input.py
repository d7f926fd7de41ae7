"""A FHIR Task from a client, as the handover message it asks for.

``POST /fhir/Task`` becomes a ``handover.offered``; a status change (PATCH or PUT)
becomes ``handover.accepted``/``declined``/``completed``/``withdrawn``. What is
built here is an ordinary message: the message schema and the domain's rules then
decide, as for ``POST /v1/messages``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from services.fhir.codes import (
    INPUT_DATA_CATEGORY,
    NEEDS_REASON,
    STATUS_MESSAGE,
    SYSTEM_DATA_CATEGORY,
    SYSTEM_HANDOVER_KIND,
    SYSTEM_INPUT_TYPE,
    SYSTEM_MESSAGE_ID,
)

# Message and handover ids derived from what the client sent, so a retried POST or
# PATCH is the same message (answered as a duplicate), never a second one.
_MESSAGE_NAMESPACE = UUID("2f6d1c8a-7b3e-4e59-a0c4-93d1e6b8f720")


class TaskRefused(Exception):
    """The Task cannot be a message: 422 ``invalid_request`` unless told otherwise."""

    def __init__(self, message: str, status: int = 422, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _reference(task: dict[str, Any], element: str, kind: str) -> str:
    value = task.get(element)
    reference = value.get("reference") if isinstance(value, dict) else None
    prefix = f"{kind}/"
    if not isinstance(reference, str) or not reference.startswith(prefix):
        raise TaskRefused(f"Task.{element} must be a reference {prefix}<id>")
    return reference[len(prefix) :]


def _code(concept: Any, system: str) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("system") == system:
            code = coding.get("code")
            return code if isinstance(code, str) else None
    return None


def _message_id(task: dict[str, Any], agency: str, case_id: str) -> str:
    """The Task's identifier (the sender's idempotency key): the message id itself
    in the hub's system, else a UUID derived from it, the sender and the case (a
    system numbering Tasks per patient does not collide across cases)."""
    for identifier in task.get("identifier") or []:
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        value = identifier["value"]
        if identifier.get("system") == SYSTEM_MESSAGE_ID:
            try:
                return str(UUID(value))
            except ValueError:
                raise TaskRefused("a message-id identifier is a UUID") from None
        key = f"{agency}|{case_id}|{identifier.get('system')}|{value}"
        return str(uuid5(_MESSAGE_NAMESPACE, key))
    raise TaskRefused("Task.identifier names the sender's key for this Task (idempotency)")


def _categories(task: dict[str, Any]) -> list[str]:
    found = []
    for item in task.get("input") or []:
        if not isinstance(item, dict) or _code(item.get("type"), SYSTEM_INPUT_TYPE) != (
            INPUT_DATA_CATEGORY
        ):
            continue
        value = item.get("valueCode")
        if value is None and isinstance(item.get("valueCoding"), dict):
            coding = item["valueCoding"]
            value = coding.get("code") if coding.get("system") == SYSTEM_DATA_CATEGORY else None
        if not isinstance(value, str):
            raise TaskRefused("a data-category input carries valueCode (a data category)")
        found.append(value)
    return found


def _text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str):
        return concept["text"]
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict):
            for key in ("display", "code"):
                if isinstance(coding.get(key), str):
                    return coding[key]
    return None


def offered_message(body: Any, *, agency: str, actor: str) -> dict[str, Any]:
    """``handover.offered`` from a new Task: requester (the caller), owner (the
    receiving agency), for (the case), code (the kind), authoredOn (when), the
    data-category inputs, restriction.period.end (due_at), reasonCode or note
    (reason)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Task":
        raise TaskRefused("the body is a FHIR Task (resourceType Task)")
    if body.get("status", "requested") != "requested":
        raise TaskRefused("a new Task has status requested (an offer)")
    requester = _reference(body, "requester", "Organization")
    if requester != agency:
        raise TaskRefused(
            f"this token sends only as agency {agency} (Task.requester)", 403, "agency_mismatch"
        )
    case_id = _reference(body, "for", "Patient")
    kind = _code(body.get("code"), SYSTEM_HANDOVER_KIND)
    if kind is None:
        raise TaskRefused(f"Task.code names the handover kind in {SYSTEM_HANDOVER_KIND}")
    message_id = _message_id(body, agency, case_id)
    authored = body.get("authoredOn")
    if not isinstance(authored, str):
        # The moment of the offer is part of the message: a default of "now" would
        # make a retried POST another body under the same key (message_id_reused).
        raise TaskRefused("Task.authoredOn is required: when the handover was offered")
    payload: dict[str, Any] = {
        "handover_id": str(uuid5(_MESSAGE_NAMESPACE, f"handover|{agency}|{message_id}")),
        "kind": kind,
        "to_agency": _reference(body, "owner", "Organization"),
        "data_categories": _categories(body),
    }
    reason = _text(body.get("reasonCode"))
    if reason is None:
        notes = [n.get("text") for n in body.get("note") or [] if isinstance(n, dict)]
        reason = next((n for n in notes if isinstance(n, str)), None)
    if reason is not None:
        payload["reason"] = reason
    restriction = body.get("restriction")
    period = restriction.get("period") if isinstance(restriction, dict) else None
    if isinstance(period, dict) and period.get("end") is not None:
        payload["due_at"] = period["end"]
    return {
        "message_id": message_id,
        "type": "handover.offered",
        "agency": agency,
        "case_id": case_id,
        "occurred_at": authored,
        "actor": actor,
        "payload": payload,
    }


def requested_change(body: Any) -> tuple[str, str | None, dict[str, Any] | None]:
    """(status, reason, the Task as sent for a PUT) from a PATCH or PUT body: a JSON
    Patch (``replace`` or ``add`` of ``/status`` and ``/statusReason``), or a Task or
    partial Task with ``status`` (and ``statusReason``)."""
    if isinstance(body, list):
        status: Any = None
        reason: str | None = None
        for op in body:
            if not isinstance(op, dict) or op.get("op") not in ("replace", "add"):
                raise TaskRefused("a JSON Patch here only replaces /status and /statusReason")
            path = op.get("path")
            if path == "/status":
                status = op.get("value")
            elif path == "/statusReason":
                reason = _text(op.get("value"))
            elif path == "/statusReason/text" and isinstance(op.get("value"), str):
                reason = op["value"]
            else:
                raise TaskRefused(f"only /status and /statusReason can change, not {path}")
        if not isinstance(status, str):
            raise TaskRefused("the patch sets /status")
        return status, reason, None
    if not isinstance(body, dict) or body.get("resourceType", "Task") != "Task":
        raise TaskRefused("the body is a Task, a partial Task or a JSON Patch")
    status = body.get("status")
    if not isinstance(status, str):
        raise TaskRefused("Task.status is required")
    return status, _text(body.get("statusReason")), body


def unchanged_elements(sent: dict[str, Any], current: dict[str, Any]) -> None:
    """A PUT may change the status only: the references it names must be the
    Task's own."""
    for element in ("for", "requester", "owner"):
        if element in sent and sent[element] != current.get(element):
            raise TaskRefused(f"Task.{element} cannot change (only the status can)")


def decision_message(
    *,
    case_id: str,
    handover_id: str,
    status: str,
    reason: str | None,
    agency: str,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """The message for a Task status change; its id derived from the handover and
    the change, so a repeated PATCH is the same message."""
    message_type = STATUS_MESSAGE.get(status)
    if message_type is None:
        allowed = ", ".join(sorted(STATUS_MESSAGE))
        raise TaskRefused(f"a Task's status can be set to {allowed}", 409, "invalid_transition")
    payload: dict[str, Any] = {"handover_id": handover_id}
    if message_type in NEEDS_REASON and reason is not None:
        payload["reason"] = reason
    return {
        "message_id": str(uuid5(_MESSAGE_NAMESPACE, f"{handover_id}|{message_type}|{agency}")),
        "type": message_type,
        "agency": agency,
        "case_id": case_id,
        "occurred_at": now.isoformat(),
        "actor": actor,
        "payload": payload,
    }
