"""Dependency audit for CI: pip-audit against the PyPI vulnerability service.

Exit 1 when a known vulnerability is found. When the service cannot be trusted to
have answered, print ``dependency audit: not checked (<reason>)`` and exit 0: never
a claim of "no known vulnerabilities" for packages that were not looked at.

pip-audit itself reports a package the service does not know as skipped, and then
still prints "No known vulnerabilities found"; a service that answers nothing (a
mirror without the JSON API, a closed network) looks clean. So a canary goes first:
a release with known vulnerabilities (jinja2 2.10), through the same client and
service. Only when that is reported vulnerable are the real targets audited.

    python tools/dependency_audit.py [--installed] [--requirement FILE]... [-- PIP_AUDIT_ARGS]

Every pip-audit run has a time limit, so a hanging network cannot hang CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANARY = ("jinja2", "2.10")  # CVE-2019-10906 and others: every real service knows them
SERVICE = "pypi"  # pip-audit's name for the PyPI vulnerability service


@dataclass
class Audit:
    """What one pip-audit run said: vulnerable, checked clean, and not checked."""

    vulnerable: dict[str, list[str]] = field(default_factory=dict)  # "name version": ids
    clean: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name: reason


class NotChecked(Exception):
    """The audit could not be made; the message says why."""


def run_pip_audit(command: list[str], args: list[str], timeout: float) -> Audit:
    """Run pip-audit with JSON output; its own process group is killed on timeout."""
    full = [*command, "--vulnerability-service", SERVICE, "--format", "json"]
    full += ["--progress-spinner", "off", "--timeout", str(max(1, int(timeout / 4))), *args]
    process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
        full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise NotChecked(f"pip-audit gave no answer within {timeout:.0f} s") from None
    try:
        report = json.loads(out)
    except ValueError:
        raise NotChecked(f"pip-audit failed: {_last_line(err)}") from None
    return parse_report(report)


def parse_report(report: Any) -> Audit:
    audit = Audit()
    for dependency in report.get("dependencies", []):
        name = str(dependency.get("name"))
        if "skip_reason" in dependency:
            audit.skipped[name] = str(dependency["skip_reason"])
            continue
        label = f"{name} {dependency.get('version')}"
        vulns = dependency.get("vulns") or []
        if vulns:
            audit.vulnerable[label] = [_describe_vuln(v) for v in vulns]
        else:
            audit.clean.append(label)
    return audit


def _describe_vuln(vuln: Any) -> str:
    fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
    return f"{vuln.get('id')} (fixed in: {fixes})"


def _last_line(stream: bytes) -> str:
    lines = [line.strip() for line in stream.decode(errors="replace").splitlines()]
    found = [line for line in lines if line]
    return found[-1][:300] if found else "no output"


def check_canary(command: list[str], timeout: float) -> None:
    """Raise ``NotChecked`` unless the service reports the canary as vulnerable."""
    name, version = CANARY
    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "canary.txt"
        requirements.write_text(f"{name}=={version}\n")
        audit = run_pip_audit(
            command, ["--requirement", str(requirements), "--no-deps", "--disable-pip"], timeout
        )
    if audit.vulnerable:
        return
    if name in audit.skipped:
        raise NotChecked(
            f"the PyPI vulnerability service answered 'not found' for {name} {version}, "
            "a release with known vulnerabilities: it is not answering here"
        )
    raise NotChecked(
        f"the PyPI vulnerability service reports nothing for {name} {version}, "
        "a release with known vulnerabilities"
    )


def audit_targets(
    command: list[str], installed: bool, requirements: list[Path], extra: list[str], timeout: float
) -> dict[str, Audit]:
    results: dict[str, Audit] = {}
    if installed:
        # The hub itself is installed editable and is not on PyPI.
        results["installed"] = run_pip_audit(command, ["--skip-editable", *extra], timeout)
    for path in requirements:
        args = ["--requirement", str(path), "--no-deps", "--disable-pip", *extra]
        results[str(path)] = run_pip_audit(command, args, timeout)
    return results


def report(results: dict[str, Audit]) -> int:
    vulnerable = {label: ids for a in results.values() for label, ids in a.vulnerable.items()}
    clean = {label for a in results.values() for label in a.clean}
    skipped = {name: reason for a in results.values() for name, reason in a.skipped.items()}
    for label, ids in sorted(vulnerable.items()):
        print(f"  VULNERABLE {label}: {'; '.join(ids)}")
    for name, reason in sorted(skipped.items()):
        print(f"  not checked {name}: {reason}")
    if vulnerable:
        print(
            f"dependency audit: FAILED: {sum(map(len, vulnerable.values()))} known "
            f"vulnerabilities in {len(vulnerable)} packages ({', '.join(results)})"
        )
        return 1
    if not clean:
        print("dependency audit: not checked (the service answered for no package)")
        return 0
    not_checked = f"; {len(skipped)} not checked, listed above" if skipped else ""
    print(
        f"dependency audit: {len(clean)} package versions checked against the PyPI "
        f"vulnerability service ({', '.join(results)}): no known vulnerabilities{not_checked}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--installed", action="store_true", help="audit this environment")
    parser.add_argument(
        "--requirement", type=Path, action="append", default=[], help="a pinned lock file"
    )
    parser.add_argument(
        "--pip-audit",
        default=f"{shlex.quote(sys.executable)} -m pip_audit",
        help="the pip-audit command line (default: this interpreter's)",
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per pip-audit run")
    parser.add_argument("extra", nargs="*", help="after --: passed to pip-audit")
    args = parser.parse_args(argv)
    command = shlex.split(args.pip_audit)
    try:
        check_canary(command, min(args.timeout, 60.0))
        results = audit_targets(command, args.installed, args.requirement, args.extra, args.timeout)
    except NotChecked as reason:
        print(f"dependency audit: not checked ({reason})")
        return 0
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
