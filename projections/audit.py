"""Audit trail: every stored event in global order, chained by SHA-256.

Each entry's hash covers a canonical encoding of the stored event (position,
aggregate id, version, topic and the stored bytes: ciphertext where fields are
encrypted) plus the previous entry's hash, so changing, removing or reordering
any stored event breaks the chain from that position on.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from projections.events import EventRecord

GENESIS = "0" * 64
STATUTORY_TASK = "statutory_task"


def canonical(
    position: int, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> bytes:
    return _header(position, originator_id, version, topic) + bytes(state)


def _header(
    position: int, originator_id: UUID | str, version: int, topic: str, uid: str | None = None
) -> bytes:
    # A UUID prints canonically already; anything else is parsed to be normalised.
    if uid is None:
        uid = str(originator_id if type(originator_id) is UUID else UUID(str(originator_id)))
    return f"hub-audit-v1\n{position}\n{uid}\n{version}\n{topic}\n".encode()


def chain_hash(previous: str, encoded: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + encoded).hexdigest()


def legal_basis(record: EventRecord | None) -> str:
    """Consent ids a disclosure relied on, else the agency's statutory task."""
    if record is None:
        return STATUTORY_TASK
    basis = record.data.get("legal_basis")
    if basis:
        return ",".join(f"consent:{c}" if c != STATUTORY_TASK else c for c in basis)
    if record.type in ("ConsentGranted", "ConsentRevoked"):
        return f"consent:{record.data['consent_id']}"
    return STATUTORY_TASK


def audit_row(
    previous: bytes,
    position: int,
    originator_id: UUID | str,
    version: int,
    topic: str,
    state: bytes,
    record: EventRecord | None,
    canonical_id: str | None = None,
) -> tuple[bytes, tuple[Any, ...]]:
    """One audit trail entry: the previous and new hash as raw digests, the entry as
    a tuple in the view table's column order (position, case_id, type, agency, actor,
    occurred_at, recorded_at, legal_basis, hash). ``record`` is the decoded case event,
    or None for other aggregates' events. ``canonical_id``: ``str(UUID(originator_id))``
    when the caller has it already."""
    digest = hashlib.sha256(
        previous + _header(position, originator_id, version, topic, canonical_id) + bytes(state)
    ).digest()
    if record is None:
        return digest, (
            position,
            None,
            topic.rsplit(".", 1)[-1],
            None,
            None,
            None,
            None,
            STATUTORY_TASK,
            digest.hex(),
        )
    return digest, (
        position,
        record.case_id or None,
        record.type,
        record.agency,
        record.actor,
        record.occurred_at,
        record.recorded_at,
        legal_basis(record),
        digest.hex(),
    )
