"""``hub audit verify``: recompute the hash chain from the stored events themselves
and compare it with the audit trail and its checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.audit import GENESIS, canonical, chain_hash
from services.views.store import tracking_name


@dataclass(frozen=True)
class Verification:
    ok: bool
    events_checked: int
    head_hash: str
    first_broken_position: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None or k == "ok"}


def verify_chain(recorder: Any, views: Any, page: int = 5000) -> Verification:
    upto = views.max_tracking_id(tracking_name("audit")) or 0
    checkpoints = {
        row["position"]: row["head_hash"]
        for row in views.query("SELECT position, head_hash FROM view_audit_checkpoints")
    }
    head, checked, start = GENESIS, 0, 1
    while start <= upto:
        notifications = [n for n in recorder.select_notifications(start, page) if n.id <= upto]
        if not notifications:
            break
        # From the requested start, so an entry whose event vanished is seen here.
        trail = {
            row["position"]: row["hash"]
            for row in views.query(
                f"SELECT position, hash FROM view_audit WHERE position >= {views.P} "
                f"AND position <= {views.P}",
                (start, notifications[-1].id),
            )
        }
        for n in notifications:
            skipped = [position for position in trail if position < n.id]
            if skipped:
                return Verification(
                    False, checked, head, min(skipped), "audit entry without stored event"
                )
            head = chain_hash(
                head, canonical(n.id, n.originator_id, n.originator_version, n.topic, n.state)
            )
            stored = trail.pop(n.id, None)
            if stored != head:
                reason = (
                    "no audit entry for this stored event"
                    if stored is None
                    else "stored event does not match its audit hash"
                )
                return Verification(False, checked, head, n.id, reason)
            if n.id in checkpoints and checkpoints[n.id] != head:
                return Verification(False, checked, head, n.id, "checkpoint differs")
            checked += 1
        if trail:
            missing = min(trail)
            return Verification(False, checked, head, missing, "audit entry without stored event")
        start = notifications[-1].id + 1
    # Entries beyond the last stored event: the newest events were removed.
    beyond = views.query(
        f"SELECT MIN(position) AS position FROM view_audit WHERE position >= {views.P} "
        f"AND position <= {views.P}",
        (start, upto),
    )
    if beyond and beyond[0]["position"] is not None:
        return Verification(
            False, checked, head, beyond[0]["position"], "audit entry without stored event"
        )
    return Verification(True, checked, head)
