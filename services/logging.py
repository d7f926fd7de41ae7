"""structlog, configured once at start: JSON off a TTY, pretty on one.

Log lines carry ids (case, message, agency) and codes, never personal data:
callers bind ids only, and ``drop_personal_keys`` withholds any key that could
carry a participant's data should one slip in: every field name marked
``Personal`` on a message payload, whole payloads, and any ciphertext value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from services.crypto import PREFIX as CIPHERTEXT_PREFIX
from services.messages import PERSONAL_KEYS as PERSONAL_FIELD_NAMES

PERSONAL_KEYS = PERSONAL_FIELD_NAMES | {"payload"}
WITHHELD = "[withheld]"
_configured = False


def drop_personal_keys(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in PERSONAL_KEYS.intersection(event_dict):
        event_dict[key] = WITHHELD
    for key, value in event_dict.items():
        if isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX):
            event_dict[key] = WITHHELD
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    global _configured  # noqa: PLW0603 - configured once per process by design
    if _configured:
        return
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_personal_keys,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True
