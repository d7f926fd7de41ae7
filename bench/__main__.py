"""``python -m bench NAME [--quick]`` — NAME is one benchmark or ``all``."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ["append"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes (what CI runs)")
    args = parser.parse_args()
    for name in BENCHMARKS if args.name == "all" else [args.name]:
        importlib.import_module(f"bench.{name}").run(quick=args.quick)


if __name__ == "__main__":
    main()
