"""structlog, configured once at start: JSON off a TTY, pretty on one.

Log lines carry ids (case, message, agency) and codes, never personal data:
callers bind ids only, and ``drop_personal_keys`` removes any key that could
carry a participant's data should one slip in.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog

PERSONAL_KEYS = frozenset(
    {"name", "birth_date", "contact", "participant", "text", "payload", "employer"}
)
_configured = False


def drop_personal_keys(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in PERSONAL_KEYS.intersection(event_dict):
        event_dict[key] = "[withheld]"
    return event_dict


def configure_logging(
    level: str = "INFO", fmt: str = "auto", stream: IO[str] | None = None
) -> None:
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
