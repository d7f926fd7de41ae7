"""The message parser and the recording service, fuzzed (hypothesis), on both stores.

Arbitrary bytes, arbitrary JSON (as bytes and as a decoded object) and valid messages
with one part replaced, dropped or retyped go to ``MessageService.record_raw`` on a
store holding a real case. Whatever comes in, the answer is a result or one of the
documented refusals (``MessageInvalid``, a domain rule, a service refusal: what the
HTTP layer maps to 4xx), never another exception; and after a refusal every table of
the store holds what it held before (no event, no receipt, no key: no partial write).

``HUB_FUZZ_EXAMPLES`` sets the examples per test (CI: a few dozen; the reliability
report's run: more).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from services.bootstrap import Hub
from services.errors import ServiceError
from services.messages import MessageInvalid
from tests import factories as f

EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "30"))
COUNT_FILE = os.environ.get("HUB_FUZZ_COUNT_FILE")  # one JSON line per test: its outcomes
OUTCOMES: Counter = Counter()  # "recorded", "duplicate" or the refusal's code
REFUSALS = (MessageInvalid, DomainError, ServiceError)
JC, COACH = "jc-fuzz", "coach-fuzz"
CASE_ID = UUID("6d1f4c1e-0000-4000-8000-00000000f022")
HANDOVER_ID = UUID("6d1f4c1e-0000-4000-8000-00000000a0a0")

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # One store per test, reused by every example: each compares before with after.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


def _case_history() -> list[dict[str, Any]]:
    return [
        f.opened(JC, CASE_ID, participant={"pseudonym": "F-1", "name": "Fuzz Person"}),
        f.consent(
            JC,
            CASE_ID,
            consent_id="c1",
            categories=["identity", "contact"],
            source=JC,
            recipients=[COACH],
        ),
        f.offer(JC, CASE_ID, HANDOVER_ID, kind="assignment", to=COACH, categories=["identity"]),
    ]


# Valid next steps of that case (and one that opens another): the bases to mutate.
def _next_steps() -> list[dict[str, Any]]:
    return [
        f.decide("handover.accepted", COACH, CASE_ID, HANDOVER_ID),
        f.decide("handover.declined", COACH, CASE_ID, HANDOVER_ID, reason="no_capacity"),
        f.message("note.added", JC, CASE_ID, {"text": "a note", "category": "notes"}),
        f.message("coach.assigned", COACH, CASE_ID, {"coach": "coach-1"}),
        f.opened(JC, uuid4()),
        *_case_history(),  # repeats (same message_id) and reuses of an id
    ]


@pytest.fixture
def fuzz_hub(hub: Hub, request: pytest.FixtureRequest) -> Iterator[Hub]:
    hub.registry.register(JC, "jobcenter", "Fuzz Jobcenter")
    hub.registry.register(COACH, "coaching_provider", "Fuzz Coaching")
    for step in _case_history():
        hub.messages.record_raw(step)
    OUTCOMES.clear()
    yield hub
    if COUNT_FILE:
        line = {"test": request.node.name, "examples": sum(OUTCOMES.values()), **OUTCOMES}
        with open(COUNT_FILE, "a") as out:
            out.write(json.dumps(line) + "\n")


def _store_tables(hub: Hub) -> dict[str, tuple[int, str]]:
    """Every table of the store: its row count and a digest of its rows."""
    url = hub.settings.database_url
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            return {
                name: (
                    conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0],
                    repr(sorted(map(repr, conn.execute(f'SELECT * FROM "{name}"')))),
                )
                for name in names
            }
    import psycopg
    from psycopg import sql

    schema = parse_qs(urlsplit(url).query)["schema"][0]
    base = url.split("?", 1)[0]
    with psycopg.connect(base) as conn:
        names = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN (%s, %s)",
            (schema, f"{schema}_keys"),
        ).fetchall()
        tables = {}
        for table_schema, name in names:
            ident = sql.Identifier(table_schema, name)
            rows = conn.execute(sql.SQL("SELECT * FROM {}").format(ident)).fetchall()
            tables[f"{table_schema}.{name}"] = (len(rows), repr(sorted(map(repr, rows))))
        return tables


def _record_and_check(hub: Hub, raw: Any) -> None:
    before = _store_tables(hub)
    refused: Exception | None = None
    try:
        result = hub.messages.record_raw(raw)
    except REFUSALS as refusal:  # anything else fails the test with its traceback
        refused = refusal
    if refused is not None:
        code = getattr(refused, "code", "")
        OUTCOMES[code] += 1
        assert code, f"{type(refused).__name__} without a code"
        assert _store_tables(hub) == before, f"partial write after {type(refused).__name__}"
        return
    assert isinstance(result, dict)
    assert "message_id" in result
    OUTCOMES["duplicate" if result.get("duplicate") else "recorded"] += 1


@pytest.mark.slow
@FUZZ
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_cleanly(fuzz_hub: Hub, raw: bytes) -> None:
    _record_and_check(fuzz_hub, raw)


@pytest.mark.slow
@FUZZ
@given(value=json_values, as_object=st.booleans())
def test_arbitrary_json_is_refused_cleanly(fuzz_hub: Hub, value: Any, as_object: bool) -> None:
    _record_and_check(fuzz_hub, value if as_object else json.dumps(value).encode())


# Values of the right form for some field or other: ids, agencies, times, categories.
PLAUSIBLE = [
    str(CASE_ID),
    str(HANDOVER_ID),
    str(uuid4()),
    JC,
    COACH,
    "auditor",
    "2026-03-02T09:00:00+00:00",
    "1999-01-01T00:00:00Z",
    "identity",
    ["identity", "health"],
    [COACH, JC],
    "",
    None,
]


def _mutate(message: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """One change to a valid message: a field (or payload field) replaced by any JSON
    value, dropped, or the type swapped; sometimes a fresh message_id."""
    mutated = json.loads(json.dumps(message))
    target = mutated
    if mutated["payload"] and data.draw(st.booleans(), label="in payload"):
        target = mutated["payload"]
    key = data.draw(st.sampled_from(sorted(target)), label="key")
    # Half the changes keep the message valid in form, so the rules and the store see
    # them too, not only the parser.
    action = data.draw(
        st.sampled_from(["fresh id", "plausible", "as is", "replace", "drop", "retype"]),
        label="action",
    )
    if action == "replace":
        target[key] = data.draw(json_values, label="value")
    elif action == "plausible":
        mutated["message_id"] = str(uuid4())
        target[key] = data.draw(st.sampled_from(PLAUSIBLE), label="value")
    elif action == "drop":
        del target[key]
    elif action == "retype":
        mutated["type"] = data.draw(
            st.sampled_from(
                [
                    "case.opened",
                    "handover.accepted",
                    "consent.revoked",
                    "participant.erased",
                    "case.closed",
                    "measure.ended",
                    "note.added",
                    "appointment.held",
                ]
            ),
            label="type",
        )
    elif action == "fresh id":
        mutated["message_id"] = str(uuid4())
    return mutated


@pytest.mark.slow
@FUZZ
@given(base=st.sampled_from(_next_steps()), data=st.data())
def test_valid_messages_with_one_part_broken_are_recorded_or_refused_cleanly(
    fuzz_hub: Hub, base: dict[str, Any], data: st.DataObject
) -> None:
    mutated = _mutate(base, data)
    as_bytes = data.draw(st.booleans(), label="as bytes")
    _record_and_check(fuzz_hub, json.dumps(mutated).encode() if as_bytes else mutated)
