"""The cipher keeps unwrapped data keys for writing only for the most recently used
participants (a bounded cache), and an evicted key is unwrapped again from its table:
ciphertexts stay readable and no key is made twice."""

from __future__ import annotations

import secrets

import pytest

from services.crypto import FieldCipher


class KeyTableInMemory:
    """A pure in-memory stand-in for the store's key table (a unit test of the cache)."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[bytes | None, bool]] = {}
        self.check: bytes | None = None
        self.loads: list[str] = []

    def load_key(self, key_id: str) -> tuple[bytes | None, bool] | None:
        self.loads.append(key_id)
        return self.keys.get(key_id)

    def insert_key(self, key_id: str, wrapped: bytes) -> None:
        self.keys.setdefault(key_id, (wrapped, False))

    def destroy_key(self, key_id: str) -> None:
        self.keys[key_id] = (None, True)

    def load_check(self) -> bytes | None:
        return self.check

    def insert_check(self, value: bytes) -> None:
        self.check = value


def test_write_keys_kept_are_bounded_least_recently_used_first() -> None:
    table = KeyTableInMemory()
    cipher = FieldCipher(secrets.token_bytes(32), table, keys_kept=2)
    sealed = {key_id: cipher.encrypt(key_id, f"text of {key_id}") for key_id in ("a", "b")}
    table.loads.clear()
    cipher.encrypt("a", "again")  # kept: no table read
    assert table.loads == []
    sealed["c"] = cipher.encrypt("c", "text of c")  # a third key: "b" (least recent) goes
    table.loads.clear()
    cipher.encrypt("a", "still kept")
    assert table.loads == []
    cipher.encrypt("b", "unwrapped again")
    assert table.loads == ["b"]
    assert len(table.keys) == 3  # no key was made twice
    for key_id, text in sealed.items():
        assert cipher.reveal(text) == f"text of {key_id}"


def test_an_evicted_key_destroyed_elsewhere_takes_no_new_data() -> None:
    table = KeyTableInMemory()
    cipher = FieldCipher(secrets.token_bytes(32), table, keys_kept=1)
    cipher.encrypt("a", "first")
    cipher.encrypt("b", "pushes a out")
    table.destroy_key("a")  # another process erased the participant
    with pytest.raises(Exception, match="erased"):
        cipher.encrypt("a", "after the erasure")


def test_keys_kept_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FieldCipher(secrets.token_bytes(32), KeyTableInMemory(), keys_kept=0)
