"""The audit trail: every stored event in global order, hash-chained
(``projections.audit``), with a checkpoint of the chain's head every
``checkpoint_every`` positions; and ``verify_chain`` (``hub audit verify``), which
recomputes the chain from the stored events themselves and compares.

The group tracks one position, "audit", and commits page by page, also during a
rebuild: its rows are appended once and never change. A rebuild chains every event
again into shadow tables (``Tables``) beside the live trail; the swap replaces the
live trail only with the same chain (``ShadowTables.swap``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from projections.audit import GENESIS, audit_row, canonical, chain_hash
from projections.events import READ_TOPIC, decode_read
from services.views.page import Page
from services.views.sql.batch import ViewWrites
from services.views.sql.schema import LIVE, Tables, tracking_name

log = structlog.get_logger("hub.views")


class AuditTrail:
    tracks = ("audit",)

    def __init__(self, views: Any, *, checkpoint_every: int, tables: Tables = LIVE) -> None:
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self._tables = tables
        self._checkpoint_every = checkpoint_every
        self.forget()

    def forget(self) -> None:
        self._head: str | None = None  # the chain's head as committed (hex)

    def begin_rebuild(self) -> None:
        pass  # appended page by page either way

    def end_rebuild(self) -> None:
        pass

    def folded_to(self, committed: dict[str, int]) -> int:
        return committed["audit"]

    def holds_unwritten(self) -> bool:
        return False

    def process(self, page: Page, committed: dict[str, int], writes: ViewWrites) -> None:
        """Chain every event of the page after the committed position, in order."""
        after = committed["audit"]
        last = page.last
        if last <= after:
            return
        digest = bytes.fromhex(self._load_head())
        audit = writes.audit
        checkpoint_every = self._checkpoint_every
        for (position, originator_id, version, topic, state), decoded in zip(
            page.rows, page.records, strict=True
        ):
            if position <= after:
                continue
            record = decoded
            if record is None and topic == READ_TOPIC:
                # A read, chained like every event, listed under the case it read.
                record = decode_read(position, originator_id, version, topic, state)
            digest, row = audit_row(
                digest,
                position,
                originator_id,
                version,
                topic,
                state,
                record,
                originator_id,  # canonical UUID text already
            )
            audit.append(row)
            if position % checkpoint_every == 0:
                head = row[-1]
                writes.checkpoints.append((position, head))
                log.info("audit_checkpoint", position=position, head_hash=head)
        writes.positions["audit"] = last
        self._head = digest.hex()  # forgotten again if the commit is refused

    def flush(self, writes: ViewWrites, *, drained: bool) -> None:
        pass  # nothing held back

    def committed(self) -> None:
        pass

    def _load_head(self) -> str:
        if self._head is None:
            rows = self._views.query(
                f"SELECT hash FROM {self._tables['view_audit']} ORDER BY position DESC LIMIT 1"
            )
            self._head = rows[0]["hash"] if rows else GENESIS
        return self._head


# ---- verifying -------------------------------------------------------------------
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
