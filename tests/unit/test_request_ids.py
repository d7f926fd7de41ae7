"""Made request ids (``services.api.middleware``): 32 hex digits, never the same twice
in a process, and a forked child's are its own."""

from __future__ import annotations

import os
import re

from services.api.middleware import made_request_id

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_made_ids_are_32_hex_digits_and_all_different() -> None:
    made = [made_request_id() for _ in range(10_000)]
    assert all(HEX32.match(i) for i in made)
    assert len(set(made)) == len(made)


def test_a_forked_child_makes_ids_its_parent_does_not() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, made_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = made_request_id()
    assert HEX32.match(child)
    assert child[:16] != parent[:16]  # another prefix, so never one of the parent's ids
