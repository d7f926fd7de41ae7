"""mypy with a baseline that may only shrink.

``python tools/mypy_baseline.py`` runs mypy as configured in pyproject.toml
(domain/, projections/ and tools/ strict, services/ with the defaults) and
compares the errors per file with ``mypy-baseline.txt``:

- a file with more errors than its baseline (a file not listed has 0) fails;
- the strict packages may have no baseline at all: any error there fails;
- a file with fewer errors passes, with a note to lower its count, which
  ``--update`` does (it never raises a count: more errors are fixed, not baselined).

Exit status 0 when nothing is above the baseline, 1 when something is, 2 when
mypy itself could not run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "mypy-baseline.txt"
# Packages checked with --strict: they are clean, and stay so without a baseline.
STRICT = ("domain/", "projections/", "tools/")
_ERROR = re.compile(r"^(?P<path>[^:\s][^:]*):\d+(?::\d+)?: error: ")
HEADER = """\
# mypy errors per file outside the strict packages: `python tools/mypy_baseline.py`
# (run by `./dev check`) fails when a file has more errors than its count here.
# The counts may only go down: when a file has fewer, lower its count
# (`python tools/mypy_baseline.py --update`). A file not listed may have none.
"""


@dataclass
class Comparison:
    above: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (found, allowed)
    below: dict[str, tuple[int, int]] = field(default_factory=dict)
    strict_listed: list[str] = field(default_factory=list)  # baselined strict files

    @property
    def failed(self) -> bool:
        return bool(self.above or self.strict_listed)


def count_errors(output: str) -> Counter[str]:
    """Errors per file in mypy's output (notes and the summary line are not errors)."""
    counts: Counter[str] = Counter()
    for line in output.splitlines():
        match = _ERROR.match(line)
        if match:
            counts[match["path"].replace("\\", "/")] += 1
    return counts


def parse_baseline(text: str) -> dict[str, int]:
    """``path count`` per line; ``#`` starts a comment."""
    baseline: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"mypy-baseline.txt:{number}: expected 'path count', got {raw!r}")
        if parts[0] in baseline:
            raise ValueError(f"mypy-baseline.txt:{number}: {parts[0]} is listed twice")
        baseline[parts[0]] = int(parts[1])
    return baseline


def format_baseline(counts: Counter[str] | dict[str, int]) -> str:
    lines = [f"{path} {count}" for path, count in sorted(counts.items()) if count > 0]
    return HEADER + "\n".join(lines) + "\n"


def compare(found: Counter[str], baseline: dict[str, int]) -> Comparison:
    result = Comparison()
    result.strict_listed = sorted(path for path in baseline if path.startswith(STRICT))
    for path in sorted(set(found) | set(baseline)):
        allowed = 0 if path.startswith(STRICT) else baseline.get(path, 0)
        count = found.get(path, 0)
        if count > allowed:
            result.above[path] = (count, allowed)
        elif count < allowed:
            result.below[path] = (count, allowed)
    return result


def lowered(found: Counter[str], baseline: dict[str, int]) -> dict[str, int]:
    """The baseline with every count brought down to what was found, never up."""
    return {path: min(allowed, found.get(path, 0)) for path, allowed in baseline.items()}


def run_mypy() -> tuple[int, str]:
    process = subprocess.run(  # this interpreter's mypy, fixed arguments
        [sys.executable, "-m", "mypy", "--no-pretty", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return process.returncode, process.stdout + process.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mypy with a baseline that may only shrink")
    parser.add_argument(
        "--update", action="store_true", help="lower the baseline's counts to what mypy finds"
    )
    args = parser.parse_args(argv)

    status, output = run_mypy()
    found = count_errors(output)
    # 0: clean, 1: errors reported. Anything else (2: a crash, a bad option or config)
    # or a failure without a single error line means the counts are not to be trusted.
    if status not in (0, 1) or (status == 1 and not found):
        print(output, end="")
        print(f"mypy could not check the code (exit status {status})", file=sys.stderr)
        return 2
    baseline = parse_baseline(BASELINE.read_text(encoding="utf-8"))
    result = compare(found, baseline)

    for path in result.strict_listed:
        print(f"{path}: listed in mypy-baseline.txt, but {STRICT} get no baseline")
    if result.above:
        for line in output.splitlines():
            match = _ERROR.match(line)
            if match and match["path"] in result.above:
                print(line)
        for path, (count, allowed) in result.above.items():
            print(f"{path}: {count} mypy errors, {allowed} allowed by mypy-baseline.txt")
    if args.update and not result.failed:
        BASELINE.write_text(format_baseline(lowered(found, baseline)), encoding="utf-8")
        for path, (count, allowed) in result.below.items():
            print(f"{path}: baseline lowered from {allowed} to {count}")
    else:
        for path, (count, allowed) in result.below.items():
            print(
                f"{path}: {count} mypy errors, below its baseline of {allowed}: lower it "
                "(python tools/mypy_baseline.py --update)"
            )
    total = sum(found.values())
    print(f"mypy: {total} errors, baseline {sum(baseline.values())}", end="")
    print(": more than the baseline allows" if result.failed else ": within the baseline")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
