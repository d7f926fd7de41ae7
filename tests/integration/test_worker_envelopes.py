"""The faust worker folds every envelope the relay publishes, personal fields
withheld, without a crash (it crashed on a plan's withheld goals and a measure's
withheld title, skipping those events and every one of their case after)."""

from __future__ import annotations

import pytest

from services.bootstrap import Hub
from services.demo import load_demo
from services.kafka.envelope import build_envelope, is_case_notification
from services.worker import apply_envelope


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_published_envelope_folds(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    notifications = hub.app.recorder.select_notifications(1, 10_000)
    envelopes = [
        build_envelope(hub.app.mapper.to_domain_event(n), n.id)
        for n in notifications
        if is_case_notification(n)
    ]
    assert any(e["withheld"] for e in envelopes)
    docs: dict[str, object] = {}
    totals: dict[str, object] = {}
    applied = [apply_envelope(docs, totals, envelope, 0) for envelope in envelopes]
    assert all(applied)
    assert len(docs) == 5
    # A repeat (the relay publishes at least once) is dropped, not folded twice.
    assert apply_envelope(docs, totals, envelopes[-1], 0) is False
