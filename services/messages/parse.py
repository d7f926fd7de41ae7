"""From raw input (JSON bytes, text or a decoded object) to one typed message.

``parse_message`` returns a message or raises ``MessageInvalid``. Errors never
echo input values: messages carry personal data, and refusals end up in logs,
dead-letter queues and HTTP answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.messages.envelope import MESSAGE_ADAPTER, MESSAGE_TYPES, Message

MAX_MESSAGE_BYTES = 64 * 1024


class MessageInvalid(Exception):
    """A message was refused before any rule saw it.

    ``code`` is one of ``too_large``, ``malformed_json``, ``schema_invalid``,
    ``unknown_type``. ``message`` and ``details`` never contain input values.
    """

    def __init__(
        self, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: list[dict[str, str]] = details or []


def _problem(error: Any) -> str:
    """Pydantic's message for one error, cut where it could quote the input."""
    msg = str(error["msg"])
    if error["type"] not in {"json_invalid", "value_error"} and "error" in error.get("ctx", {}):
        # Parsing errors append the parser's reason, which may quote characters;
        # value errors are this module's own words, json errors name positions.
        msg = msg.split(",", 1)[0]
    value = error.get("input")
    if isinstance(value, str) and len(value) >= 3 and value in msg:
        msg = "invalid value"
    return msg


def _path(loc: tuple[int | str, ...]) -> str:
    # Errors inside a tagged union start with the tag; the tag is no field.
    if loc and loc[0] in MESSAGE_TYPES:
        loc = loc[1:]
    return ".".join(str(part) for part in loc)


def _refusal(exc: ValidationError) -> MessageInvalid:
    errors = exc.errors(include_url=False, include_input=True)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds:
        detail = {"path": "", "problem": _problem(errors[0]), "kind": "json_invalid"}
        return MessageInvalid("malformed_json", "message is not valid JSON", [detail])
    if kinds & {"union_tag_not_found", "union_tag_invalid"}:
        allowed = ", ".join(MESSAGE_TYPES)
        detail = {
            "path": "type",
            "problem": f"missing or unknown message type; allowed: {allowed}",
            "kind": "union_tag_not_found"
            if "union_tag_not_found" in kinds
            else "union_tag_invalid",
        }
        return MessageInvalid("unknown_type", "message type is missing or unknown", [detail])
    if errors and errors[0]["loc"] == () and errors[0]["type"] == "dict_type":
        detail = {"path": "", "problem": "message must be a JSON object", "kind": "dict_type"}
        return MessageInvalid("schema_invalid", "message must be a JSON object", [detail])
    details = [{"path": _path(e["loc"]), "problem": _problem(e), "kind": e["type"]} for e in errors]
    tag = errors[0]["loc"][0] if errors and errors[0]["loc"] else None
    what = f"{tag} message" if tag in MESSAGE_TYPES else "message"
    return MessageInvalid(
        "schema_invalid", f"{what} does not match its schema ({len(details)} problem(s))", details
    )


def parse_message(raw: bytes | str | dict[str, Any]) -> Message:
    """Validate ``raw`` (a JSON document, or an already decoded object) as a message.

    The 64 KiB limit applies to raw JSON; a dict was decoded by the caller.
    """
    if isinstance(raw, dict):
        try:
            return _without_control_characters(MESSAGE_ADAPTER.validate_python(raw))
        except ValidationError as exc:
            raise _refusal(exc) from None
    if not isinstance(raw, bytes | str):
        detail = {"path": "", "problem": "message must be a JSON object", "kind": "dict_type"}
        raise MessageInvalid("schema_invalid", "message must be a JSON object", [detail])
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise MessageInvalid(
            "too_large",
            f"message exceeds {MAX_MESSAGE_BYTES} bytes",
            [{"path": "", "problem": f"at most {MAX_MESSAGE_BYTES} bytes", "kind": "too_large"}],
        )
    try:
        message = MESSAGE_ADAPTER.validate_json(raw)
        # Valid JSON carries control characters only as \u00XX escapes: most messages
        # have none, and skip the walk.
        escaped = b"\\u00" if isinstance(raw, bytes) else "\\u00"
        if escaped in raw:  # type: ignore[operator]
            return _without_control_characters(message)
        return message
    except ValidationError as exc:
        raise _refusal(exc) from None


_CONTROL = frozenset(chr(c) for c in range(32)) - {"\n", "\r", "\t"}


def _without_control_characters(message: Message) -> Message:
    """NUL and other control characters are refused: PostgreSQL text cannot hold NUL,
    and no agency field needs them (line breaks and tabs are fine)."""

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            if not _CONTROL.isdisjoint(value):
                raise MessageInvalid(
                    "schema_invalid",
                    "text must not contain control characters",
                    [{"path": path, "problem": "control character", "kind": "control_char"}],
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}")

    walk(message.model_dump(), "")
    return message
