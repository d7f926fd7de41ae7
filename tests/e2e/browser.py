"""What the browser tests share: headless Chromium (Debian's ``chromium``) driven by
Playwright for Python, skipped locally when either is missing and required in CI;
a page that collects its script errors and failed requests (``page.problems``);
screenshots kept under the test's folder and ``test-output/`` (git-ignored).
axe-core comes from npm, never a CDN (``tests/e2e/axe.py``)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def missing() -> str | None:
    """Why no browser can run here (None: it can)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is missing (pip install playwright)"
    return None


def required(problem: str) -> None:
    """A missing piece: a skip locally, a failure in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test is required in CI: {problem}")
    pytest.skip(problem)


@contextmanager
def launched(*args: str, problem: str | None = None) -> Iterator[Any]:
    """Chromium with ``CHROMIUM_ARGS`` and ``args``; ``problem`` (or one of
    ``missing()``) skips or fails first."""
    problem = problem or missing()
    if problem is not None:
        required(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *args], headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def watched(context: Any) -> Any:
    """A new page of ``context`` whose ``problems`` list its script errors and the
    console's errors (a CSP violation, a failed script or a refused request)."""
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.problems = problems
    return page


def save(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot under the test's folder, copied to ``test-output/``."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    target = ROOT / "test-output"
    target.mkdir(exist_ok=True)
    shutil.copyfile(shot, target / name)
    return shot
