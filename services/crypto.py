"""Per-participant field encryption (AES-256-GCM) with crypto-shredding.

Each case gets its own data key, stored only wrapped by the master key, in a
table apart from the events (PostgreSQL: its own schema). Personal fields
become strings ``enc:v1:<key id>:<base64 nonce+ciphertext>`` before they enter
an event; the key id is the AES-GCM associated data, so a ciphertext cannot be
moved to another case's key. Erasure destroys the wrapped key: every copy of
those fields (events, views, Kafka) then reads as erased.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.private_files import PRIVATE_DIR, PRIVATE_FILE, private_dir, tighten

log = structlog.get_logger("hub.crypto")

PREFIX = "enc:v1:"
ERASED = "[erased]"
_CHECK_PLAINTEXT = b"hub master key check v1"
# Unwrapped data keys kept for writing: the most recently used, not every participant
# ever written (memory, and fewer plain keys in a process's memory). A key dropped
# is unwrapped again from its table on its next write (one row read).
WRITE_KEYS_KEPT = 4096


class CryptoError(Exception):
    code = "crypto_error"


class MasterKeyMismatch(CryptoError):
    code = "master_key_mismatch"


class ParticipantErased(CryptoError):
    code = "participant_erased"


class KeyTable(Protocol):
    def load_key(self, key_id: str) -> tuple[bytes | None, bool] | None: ...

    def insert_key(self, key_id: str, wrapped: bytes) -> None: ...

    def destroy_key(self, key_id: str) -> None: ...

    def load_check(self) -> bytes | None: ...

    def insert_check(self, value: bytes) -> None: ...


def load_master_key(
    value: str | None,
    key_file: Path | None,
    var_dir: Path,
    say: Callable[[str], None],
    create: bool = True,
) -> bytes:
    """``HUB_MASTER_KEY`` (base64 of 32 bytes), else a key file, else (``create``, as in
    development) create one in var/, readable by the hub's user only."""
    if value:
        return _decode_key(value, "HUB_MASTER_KEY")
    path = key_file or var_dir / "master.key"
    if key_file is None and path.exists():
        # The hub's own key file in its data directory: tightened if an older version
        # left it looser. A configured file (a mounted secret) is the operator's.
        tighten(var_dir, PRIVATE_DIR)
        tighten(path, PRIVATE_FILE)
    if path.exists():
        return _read_key_file(path)
    if key_file is not None:
        raise CryptoError(f"master key file {path} does not exist")
    if not create:
        raise CryptoError("no master key is configured (HUB_MASTER_KEY_FILE or HUB_MASTER_KEY)")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    try:
        private_dir(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:  # another process made it a moment ago
        return _read_key_file(path)
    except OSError as error:
        raise CryptoError(f"cannot create the master key file {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    say(f"created a new master key at {path} (mode 0600); keep it safe and back it up")
    return base64.b64decode(key)


def _read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text()
    except OSError as error:
        raise CryptoError(f"cannot read the master key file {path}: {error.strerror}") from None
    return _decode_key(text.strip(), str(path))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise CryptoError(f"the master key in {where} is not base64") from None
    if len(key) != 32:
        raise CryptoError(f"the master key in {where} must be 32 bytes (base64 of 32 bytes)")
    return key


def case_key_id(case_id: str) -> str:
    return f"case-{case_id}"


def seal(key: bytes, key_id: str, plaintext: str, nonce: bytes) -> str:
    """``plaintext`` in the ``enc:v1`` form, under a data ``key`` and a fresh 12-byte
    ``nonce``; the key id is the associated data, binding the ciphertext to its key."""
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), key_id.encode())
    return f"{PREFIX}{key_id}:{base64.b64encode(nonce + sealed).decode()}"


class FieldCipher:
    """Encrypts and decrypts personal fields; holds unwrapped keys only for writing."""

    def __init__(
        self, master_key: bytes, table: KeyTable, *, keys_kept: int = WRITE_KEYS_KEPT
    ) -> None:
        if keys_kept < 1:
            raise ValueError("keys_kept is at least 1")
        self._master = AESGCM(master_key)
        self._table = table
        self._write_keys: OrderedDict[str, bytes] = OrderedDict()
        self._keys_kept = keys_kept
        self._lock = threading.Lock()
        self._check_master_key()

    def _check_master_key(self) -> None:
        stored = self._table.load_check()
        if stored is None:
            nonce = secrets.token_bytes(12)
            self._table.insert_check(
                nonce + self._master.encrypt(nonce, _CHECK_PLAINTEXT, b"check")
            )
            return
        try:
            self._master.decrypt(stored[:12], stored[12:], b"check")
        except InvalidTag:
            raise MasterKeyMismatch(
                "the master key does not match the one this store's keys were wrapped with; "
                "nothing was decrypted or changed"
            ) from None

    def verify_master_key(self) -> None:
        """Raises ``MasterKeyMismatch`` unless the key in memory still opens the store's
        check value (readiness: a store restored from elsewhere under a running hub)."""
        self._check_master_key()

    # ---- keys ----------------------------------------------------------------

    def _wrap(self, key_id: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._master.encrypt(nonce, key, key_id.encode())

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped[:12], wrapped[12:], key_id.encode())
        except InvalidTag:
            raise MasterKeyMismatch(
                f"key {key_id} cannot be unwrapped with this master key"
            ) from None

    def _key_for_writing(self, key_id: str) -> bytes:
        with self._lock:
            cached = self._write_keys.get(key_id)
            if cached is not None:
                self._write_keys.move_to_end(key_id)
        if cached is not None:
            return cached
        found = self._table.load_key(key_id)
        if found is None:
            key = secrets.token_bytes(32)
            self._table.insert_key(key_id, self._wrap(key_id, key))
            found = self._table.load_key(key_id)  # another writer may have won the race
        assert found is not None
        wrapped, destroyed = found
        if destroyed or wrapped is None:
            raise ParticipantErased(
                "this participant's data was erased; no new personal data is accepted"
            )
        key = self._unwrap(key_id, wrapped)
        with self._lock:
            self._write_keys[key_id] = key
            self._write_keys.move_to_end(key_id)
            while len(self._write_keys) > self._keys_kept:
                self._write_keys.popitem(last=False)  # the least recently used
        return key

    def forget(self, key_id: str) -> None:
        """Drop a cached key after its destruction was committed elsewhere."""
        with self._lock:
            self._write_keys.pop(key_id, None)

    def destroy(self, key_id: str) -> None:
        self._table.destroy_key(key_id)
        self.forget(key_id)
        log.info("participant_key_destroyed", key_id=key_id)

    # ---- fields --------------------------------------------------------------

    def encrypt(self, key_id: str, plaintext: str) -> str:
        return seal(self._key_for_writing(key_id), key_id, plaintext, secrets.token_bytes(12))

    def reveal(self, value: Any) -> Any:
        """Decrypt every ciphertext inside a JSON-like value; erased keys read as erased.
        Keys are fetched fresh for each call, so an erasure anywhere takes effect here."""
        keys: dict[str, bytes | None] = {}

        def open_one(text: str) -> str:
            key_id, _, blob = text[len(PREFIX) :].rpartition(":")
            if key_id not in keys:
                found = self._table.load_key(key_id)
                wrapped = None if found is None or found[1] else found[0]
                keys[key_id] = None if wrapped is None else self._unwrap(key_id, wrapped)
            key = keys[key_id]
            if key is None:
                return ERASED
            raw = base64.b64decode(blob)
            return AESGCM(key).decrypt(raw[:12], raw[12:], key_id.encode()).decode()

        def walk(item: Any) -> Any:
            if isinstance(item, str):
                return open_one(item) if item.startswith(PREFIX) else item
            if isinstance(item, dict):
                return {k: walk(v) for k, v in item.items()}
            if isinstance(item, list):
                return [walk(v) for v in item]
            return item

        return walk(value)


def redact(value: Any) -> Any:
    """Ciphertexts shown as such, for places that must not decrypt (logs, envelopes)."""
    if isinstance(value, str):
        return "[encrypted]" if value.startswith(PREFIX) else value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
