"""``python -m bench NAME [--quick]`` — NAME is one benchmark or ``all``.

``python -m bench report [--run-tests]`` writes docs/reliability.md (see bench.report).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from services.logging import configure_logging

BENCHMARKS = [
    "append",
    "case-length",
    "kafka",
    "http",
    "rebuild",
    "query",
    "replay",
    "webhooks",
    "soak",
    "crash",
]


def main() -> None:
    if sys.argv[1:2] == ["report"]:
        from bench.report import main as report_main

        report_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes (what CI runs)")
    args = parser.parse_args()
    # Production logging (JSON, INFO) is part of the measured cost; only the
    # terminal is spared, so the table stays readable.
    configure_logging("INFO", "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - process-long
    for name in BENCHMARKS if args.name == "all" else [args.name]:
        # A benchmark "case-length" is the module bench.case_length.
        importlib.import_module(f"bench.{name.replace('-', '_')}").run(quick=args.quick)


if __name__ == "__main__":
    main()
