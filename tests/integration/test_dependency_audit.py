"""``tools/dependency_audit.py`` (what ``./dev audit`` and CI run), through its command
line: a known vulnerability fails, and a service that does not answer is "not checked",
never "no known vulnerabilities".

Most tests give it a stand-in for pip-audit that answers in pip-audit's JSON format
as told; one runs the real pip-audit against the real service, whatever it answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "dependency_audit.py"

# A stand-in for pip-audit: FAKE_AUDIT says how to answer the canary (a requirements
# file pinning jinja2==2.10) and the real targets.
FAKE_PIP_AUDIT = r"""
import json, os, sys, time
args = sys.argv[1:]
plan = json.loads(os.environ["FAKE_AUDIT"])
is_canary = "--requirement" in args and "jinja2==2.10" in open(
    args[args.index("--requirement") + 1]).read()
how = plan["canary" if is_canary else "targets"]
name, version = ("jinja2", "2.10") if is_canary else ("urllib3", "1.26.0")
if how == "hang":
    time.sleep(600)
if how == "error":
    print("requests.exceptions.ConnectionError: cannot reach pypi.org", file=sys.stderr)
    sys.exit(1)
if how == "skipped":
    dep = {"name": name, "skip_reason": f"Dependency not found on PyPI: {name} ({version})"}
elif how == "vulnerable":
    dep = {"name": name, "version": version, "vulns": [
        {"id": "PYSEC-2021-108", "fix_versions": ["1.26.5"], "aliases": [], "description": ""}]}
else:
    dep = {"name": name, "version": version, "vulns": []}
print(json.dumps({"dependencies": [dep], "fixes": []}))
print("No known vulnerabilities found", file=sys.stderr)  # as pip-audit says when skipping
sys.exit(1 if how == "vulnerable" else 0)
"""


def audit(
    tmp_path: Path, canary: str, targets: str, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake_pip_audit.py"
    fake.write_text(FAKE_PIP_AUDIT)
    lock = tmp_path / "requirements.lock"
    lock.write_text("urllib3==1.26.0\n")
    return subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--pip-audit",
            f"{sys.executable} {fake}",
            "--requirement",
            str(lock),
            *extra,
        ],
        env={**os.environ, "FAKE_AUDIT": json.dumps({"canary": canary, "targets": targets})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_known_vulnerability_fails_the_audit(tmp_path: Path) -> None:
    result = audit(tmp_path, "vulnerable", "vulnerable")
    assert result.returncode == 1, result.stdout
    assert "VULNERABLE urllib3 1.26.0: PYSEC-2021-108 (fixed in: 1.26.5)" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("dependency audit: FAILED")


def test_a_clean_audit_says_how_much_it_checked(tmp_path: Path) -> None:
    result = audit(tmp_path, "vulnerable", "clean")
    assert result.returncode == 0, result.stdout
    assert "dependency audit: 1 package versions checked" in result.stdout
    assert "no known vulnerabilities" in result.stdout


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        ("skipped", "answered 'not found' for jinja2 2.10"),  # this machine's mirror
        ("clean", "reports nothing for jinja2 2.10"),
        ("error", "pip-audit failed: requests.exceptions.ConnectionError"),
    ],
)
def test_a_service_that_does_not_answer_is_not_checked_and_not_clean(
    tmp_path: Path, canary: str, reason: str
) -> None:
    result = audit(tmp_path, canary, "vulnerable")  # the targets are never looked at
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("dependency audit: not checked ("), result.stdout
    assert reason in result.stdout
    assert "no known vulnerabilities" not in result.stdout.lower()


def test_targets_the_service_does_not_know_are_not_checked(tmp_path: Path) -> None:
    result = audit(tmp_path, "vulnerable", "skipped")
    assert result.returncode == 0, result.stdout
    assert "not checked urllib3: Dependency not found on PyPI" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "dependency audit: not checked (the service answered for no package)"
    )


@pytest.mark.parametrize("hangs", ["canary", "targets"])
def test_a_hanging_audit_is_cut_off_and_not_checked(tmp_path: Path, hangs: str) -> None:
    started = time.monotonic()
    canary, targets = ("hang", "clean") if hangs == "canary" else ("vulnerable", "hang")
    result = audit(tmp_path, canary, targets, "--timeout", "3", timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stdout
    assert "dependency audit: not checked (pip-audit gave no answer within 3 s)" in result.stdout


@pytest.mark.slow
def test_the_real_pip_audit_never_calls_a_vulnerable_pin_clean(tmp_path: Path) -> None:
    """Against the real service: jinja2 2.10 is either found vulnerable, or the audit
    says it checked nothing (this machine's PyPI answers 'not found' for every release)."""
    pytest.importorskip("pip_audit")
    pinned = tmp_path / "old.txt"
    pinned.write_text("jinja2==2.10\n")
    result = subprocess.run(
        [sys.executable, str(TOOL), "--requirement", str(pinned), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    last = result.stdout.splitlines()[-1]
    if result.returncode == 1:
        assert "VULNERABLE jinja2 2.10" in result.stdout
        assert last.startswith("dependency audit: FAILED")
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert last.startswith("dependency audit: not checked ("), result.stdout
    assert "no known vulnerabilities" not in result.stdout.lower()
