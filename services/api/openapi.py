"""``/openapi.json``: FastAPI's document plus the message schema, which it cannot see
(``POST /v1/messages`` reads its body raw for the size limit and our own errors)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.messages import MESSAGE_ADAPTER


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # The same JSON Schema as /v1/schema/messages, its parts as components.
            messages = MESSAGE_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(messages.pop("$defs", {}))
            components["Message"] = messages
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
