"""The JSON Schema of every message type (served at ``/v1/schema/messages``,
exported to ``docs/messages.schema.json`` by ``hub schema``).

Personal fields carry ``x-personal-data`` with their data category, so agencies
can see which of their fields the hub encrypts.
"""

from __future__ import annotations

from typing import Any

from services.messages.envelope import MESSAGE_ADAPTER

SCHEMA_ID = "https://hub.example/schemas/messages.v1.json"
SCHEMA_TITLE = "Hub handover message v1"


def message_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of every message type, one ``oneOf`` on ``type``."""
    schema = MESSAGE_ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": SCHEMA_TITLE,
        **schema,
    }
