"""The faust-streaming worker: dashboard figures from ``hub.events.v1``, at scale.

It folds the same reducers as the in-process views (``projections``) over the
relay's envelopes: case documents in one table, dashboard totals in another,
one entry per partition (so every write stays on its event's partition), and
serves the merged figures on a loopback web view. Repeated envelopes (the relay
publishes at least once) are dropped by the case document's version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import faust

from projections.case_doc import reduce_case
from projections.dashboard import (
    dashboard_delta,
    dashboard_figures,
    dashboard_snapshot,
    empty_state,
    merge_states,
)
from projections.events import EventRecord
from projections.inbox import inbox_rows
from services.settings import Settings


def record_of(envelope: dict[str, Any]) -> EventRecord:
    return EventRecord(
        position=envelope["position"],
        case_id=envelope["case_id"],
        version=envelope["version"],
        type=envelope["type"],
        agency=envelope["agency"],
        actor=envelope["actor"],
        occurred_at=envelope["occurred_at"],
        recorded_at=envelope["recorded_at"],
        data=dict(envelope["payload"]),
    )


def apply_envelope(docs: Any, totals: Any, envelope: dict[str, Any], partition: int) -> bool:
    """Fold one envelope into the tables; False when it was a repeat."""
    record = record_of(envelope)
    before = docs.get(record.case_id)
    if before is not None and before["version"] >= record.version:
        return False
    snapshot = dashboard_snapshot(before)
    after = reduce_case(before, record)
    docs[record.case_id] = after
    key = f"partition-{partition}"
    state = totals.get(key) or empty_state()
    dashboard_delta(state, snapshot, after)
    totals[key] = state
    return True


def figures(docs: Any, totals: Any, now: datetime) -> dict[str, Any]:
    offers = [row for doc in docs.values() for row in inbox_rows(doc)]
    return dashboard_figures(merge_states(totals.values()), offers, now)


def build_worker(settings: Settings) -> faust.App:
    if not settings.kafka_bootstrap:
        raise SystemExit("hub worker needs HUB_KAFKA_BOOTSTRAP")
    (settings.var_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        "hub-dashboard",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        topic_partitions=settings.kafka_events_partitions,
        web_in_thread=True,
        datadir=str(settings.var_dir / "faust"),
    )
    events = app.topic(settings.kafka_events_topic, value_serializer="raw", key_serializer="raw")
    docs = app.Table("hub-case-docs", default=None, partitions=settings.kafka_events_partitions)
    totals = app.Table(
        "hub-dashboard-totals", default=None, partitions=settings.kafka_events_partitions
    )

    @app.agent(events)
    async def fold(stream: Any) -> None:
        async for event in stream.events():
            envelope = json.loads(event.value)
            apply_envelope(docs, totals, envelope, event.message.partition)

    @app.page("/dashboard")
    async def dashboard_page(web: Any, request: Any) -> Any:
        moment = request.query.get("now")
        try:
            now = datetime.fromisoformat(moment) if moment else datetime.now(UTC)
        except ValueError:
            return web.json(
                {"error": {"code": "invalid_request", "message": "now is ISO 8601"}}, status=400
            )
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return web.json(figures(docs, totals, now))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    return app


def main() -> None:
    app = build_worker(Settings())
    app.main()


if __name__ == "__main__":
    main()
