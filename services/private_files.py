"""Files only the hub's own user may read: the SQLite store and the master key.

A directory the hub makes is 0700 and a file it makes 0600, whatever the umask; a
file of its own found looser (made by an older version) is tightened. Directories it
did not make are left as they are, except the data directory (``HUB_VAR_DIR``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> None:
    """Make ``path`` (0700) when missing; parents above it keep the usual mode."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


def tighten(path: Path, mode: int) -> None:
    """Take group and other access off a file or directory the hub's user owns.
    Best effort: a mounted volume may refuse chmod, and that is the operator's choice."""
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(mode)
    except OSError:
        pass


def private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it: SQLite gives its -wal and
    -shm files the database file's mode, so they are private too."""
    private_dir(path.parent)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it a moment ago
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for member in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if member.exists():
            tighten(member, PRIVATE_FILE)
