"""axe-core for the browser tests, from the npm registry (no CDN).

``axe_source()`` is the text of ``axe.min.js`` at ``AXE_VERSION``: from
``HUB_AXE_JS`` if set, else from ``.venv/npm`` (git-ignored), installed there with
``npm install`` on first use. ``violations(page)`` runs it in the page through the
DevTools protocol (``page.evaluate``), which a page's Content-Security-Policy does
not block, so the pages are checked under the CSP they are served with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AXE_VERSION = "4.10.3"
PREFIX = ROOT / ".venv" / "npm"
INSTALLED = PREFIX / "node_modules" / "axe-core" / "axe.min.js"
# The rules of WCAG 2.1 A and AA, plus axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


class AxeMissing(Exception):
    """axe-core could not be had (no npm, or the registry did not answer)."""


@cache
def axe_source() -> str:
    given = os.environ.get("HUB_AXE_JS")
    if given:
        return Path(given).read_text(encoding="utf-8")
    if not INSTALLED.exists() or f'"version": "{AXE_VERSION}"' not in _package_json():
        npm = shutil.which("npm")
        if npm is None:
            raise AxeMissing("npm is missing (apt-get install npm), needed for axe-core")
        PREFIX.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX)]
        done = subprocess.run(
            [*command, f"axe-core@{AXE_VERSION}"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0 or not INSTALLED.exists():
            raise AxeMissing(f"npm install axe-core@{AXE_VERSION} failed: {done.stderr[-500:]}")
    return INSTALLED.read_text(encoding="utf-8")


def _package_json() -> str:
    package = INSTALLED.parent / "package.json"
    return package.read_text(encoding="utf-8") if package.exists() else ""


def violations(page: Any) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now: id, impact, and the first nodes."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source() + "\n;undefined")
    found = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))",
        TAGS,
    )
    return list(found)
