"""Running the ``hub`` command as a user does: a child process of this interpreter, from
the repository's root, with the environment the test gives it (no shell)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HUB = (sys.executable, "-m", "services.cli")


def hub_cli(
    *args: str,
    env: dict[str, str],
    stdin: bytes | str | None = None,
    text: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[Any]:
    """``hub ARGS`` to its end (``timeout`` seconds at most); output captured, as text
    unless ``text`` is False; the exit status is the caller's to check."""
    return subprocess.run(
        [*HUB, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
    )
