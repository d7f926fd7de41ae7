"""``python -m bench report [--run-tests]``: write docs/reliability.md from results.

The soak and crash rows come from ``bench/results/{soak,crash}.json`` (the full runs;
the ``.quick`` ones when no full run is there). With ``--run-tests`` the report first
runs, in one pytest process, the schemathesis suite with ``REPORT_SCHEMATHESIS_EXAMPLES``
examples per operation, role and mode (CI runs 40), the message fuzz with
``REPORT_FUZZ_EXAMPLES`` per test and store, and every test the hostile-input table
names; what they did and found goes to ``bench/results/tests.json``. Without it the
last ``tests.json`` is used. A table row naming a test that does not exist fails the
report, so the table cannot drift from the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
REPORT_SCHEMATHESIS_EXAMPLES = 80
REPORT_FUZZ_EXAMPLES = 400
SCHEMATHESIS = "tests/e2e/test_schemathesis.py"
FUZZ = "tests/integration/test_message_fuzz.py"
HOSTILE = "tests/e2e/test_http_hostile_input.py"
TOKENS = "tests/e2e/test_http_tokens.py"
CLI_TOKENS = "tests/e2e/test_cli_tokens.py"
OPERATOR = "tests/e2e/test_cli_operator_safety.py"
STORE = "tests/integration/test_store_errors.py"
AUDIT = "tests/integration/test_dependency_audit.py"
LOCK = "tests/unit/test_lock_file.py"

# Issue 13's findings, one row each, with the tests that cover them (file, test name).
# An empty list: the finding's build is not on this branch.
FINDINGS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "1",
        "tokens could not be revoked and never expired; `hub agency token` only added",
        [
            (CLI_TOKENS, "test_tokens_per_user_are_issued_listed_and_revoked"),
            (TOKENS, "test_an_expired_token_is_refused_and_says_so_and_nothing_else"),
            (TOKENS, "test_a_revoked_token_is_refused_by_a_second_app_on_the_same_store"),
        ],
    ),
    (
        "1",
        "a token deleted by hand still worked for 5 s",
        [
            (TOKENS, "test_a_token_deleted_by_hand_is_refused_within_a_second"),
            (
                TOKENS,
                "test_a_token_revoked_by_another_process_is_refused_by_hub_serve_within_a_second",
            ),
        ],
    ),
    (
        "1",
        "tokens per agency: the acting person was whatever `actor` a client wrote",
        [
            (TOKENS, "test_a_per_user_token_records_its_user_and_refuses_another_actor"),
            (TOKENS, "test_an_agency_wide_token_may_name_its_user_in_a_header"),
        ],
    ),
    (
        "2",
        "no rate limiting: 300 bad tokens at ~944/s, all plain 401",
        [
            (TOKENS, "test_a_client_sending_bad_tokens_gets_429_with_retry_after"),
            (TOKENS, "test_the_bad_token_table_is_bounded"),
        ],
    ),
    (
        "3",
        "no header-size limit: a 16 MiB `Authorization` header was read and hashed",
        [
            (HOSTILE, "test_an_oversized_header_is_refused_with_431_in_the_error_shape"),
            (HOSTILE, "test_a_content_length_over_the_total_limit_is_413_on_any_route"),
        ],
    ),
    (
        "3",
        "four unfinished 64 MiB headers raised RSS from 108 to 386 MB",
        [
            (HOSTILE, "test_unfinished_huge_headers_do_not_grow_the_servers_memory"),
            (HOSTILE, "test_a_head_that_never_ends_is_answered_408_after_the_read_timeout"),
            (HOSTILE, "test_a_body_that_stops_arriving_is_answered_408"),
        ],
    ),
    (
        "4",
        "a client dropping mid-body was logged as an error and counted as a 500",
        [
            (HOSTILE, "test_a_client_dropping_mid_body_is_logged_as_such_and_not_counted_as_a_500"),
        ],
    ),
    (
        "4",
        "PostgreSQL raised `pipeline aborted` where a duplicate should be an IntegrityError",
        [
            (STORE, "test_a_repeated_receipt_is_an_integrity_error_at_the_first_attempt"),
            (STORE, "test_repeats_are_answered_without_the_stores_retry_pause"),
            (HOSTILE, "test_one_message_id_sent_at_once_from_many_clients_is_recorded_once"),
        ],
    ),
    (
        "5",
        "16 writers on one case: 4.7 % / 2.7 % gave up with 409 after 21 attempts",
        [
            (HOSTILE, "test_sixteen_writers_on_one_case_get_no_conflict_from_one_server_process"),
        ],
    ),
    (
        "6",
        "existence oracle: 403 for an existing case, 404 for an unknown one",
        [
            (HOSTILE, "test_reading_a_case_one_is_not_involved_in_answers_as_for_an_unknown_case"),
            (
                HOSTILE,
                "test_writing_to_a_case_one_is_not_involved_in_answers_as_for_an_unknown_case",
            ),
            (HOSTILE, "test_an_auditor_gets_404_only_for_an_unknown_case"),
        ],
    ),
    (
        "7",
        "a trailing-slash 307 built `Location` from the `Host` header",
        [
            (HOSTILE, "test_a_trailing_slash_is_404_and_no_redirect_built_from_the_host_header"),
        ],
    ),
    (
        "7",
        "`/dashboard` sent no CSP, `X-Frame-Options` or `nosniff`",
        [
            (HOSTILE, "test_every_html_answer_carries_the_security_headers"),
            (HOSTILE, "test_json_answers_carry_nosniff"),
            (HOSTILE, "test_no_page_loads_code_from_elsewhere"),
        ],
    ),
    (
        "7",
        "any Content-Type was accepted for POST",
        [
            (HOSTILE, "test_a_post_that_is_not_application_json_is_415"),
        ],
    ),
    (
        "7",
        "`as_of=1700000000` was taken as a Unix time",
        [
            (HOSTILE, "test_as_of_is_iso_8601_only"),
        ],
    ),
    (
        "7",
        "`var/hub.db` was 0644",
        [
            (OPERATOR, "test_the_hubs_files_are_private_to_its_user"),
            (OPERATOR, "test_files_an_older_hub_left_readable_are_tightened"),
        ],
    ),
    (
        "7",
        "405 answers lacked `Allow`",
        [
            (HOSTILE, "test_405_names_the_allowed_methods"),
        ],
    ),
    (
        "7",
        "bad configuration (`HUB_LOG_FORMAT=xml`, `mysql://x`) printed tracebacks",
        [
            (OPERATOR, "test_a_bad_setting_is_one_line_naming_it"),
            (OPERATOR, "test_every_command_names_a_bad_setting_before_it_starts"),
        ],
    ),
    (
        "7",
        "`hub record /missing.json` printed a traceback",
        [
            (OPERATOR, "test_record_of_a_missing_or_unreadable_file_is_one_line"),
        ],
    ),
    (
        "7",
        "`hub participant erase` destroyed a key without confirmation",
        [
            (OPERATOR, "test_erase_without_a_terminal_and_without_yes_is_refused"),
            (OPERATOR, "test_erase_at_a_terminal_asks_and_a_no_erases_nothing"),
        ],
    ),
    (
        "7",
        "`var/master.key` sat beside `var/hub.db`",
        [
            (OPERATOR, "test_production_refuses_a_master_key_inside_the_data_directory"),
        ],
    ),
    ("8", "`/healthz` a fixed `ok`; relay, inbox, worker without metrics; no DLQ tools", []),
    ("9", "deployment: no limits, `:latest`, no securityContext, NetworkPolicy or PDB", []),
    (
        "10",
        '`pip-audit` checked nothing and still said "No known vulnerabilities"',
        [
            (AUDIT, "test_a_service_that_does_not_answer_is_not_checked_and_not_clean"),
            (AUDIT, "test_the_real_pip_audit_never_calls_a_vulnerable_pin_clean"),
            (LOCK, "test_the_image_installs_from_the_lock_with_hashes"),
        ],
    ),
]


# What the engineer who ran the benches found when looking into a failed row (server
# logs kept with HUB_BENCH_SERVER_LOG, a shorter diagnostic run). Kept beside the
# figures, which stay the commands' own; remove a note when its cause is fixed.
NOTES = [
    "**soak, server RSS**: the server runs with its case cache bounded at 4 MiB "
    "(`SOAK_CACHE_MB`), full by the end of the 60 s warm-up: in the committed run RSS "
    "was 102.4, 103.2, 103.4, 103.6, 104.0 MiB at the end of minutes 1 to 5 (+1.5 %, "
    "27,189 events, no 5xx, p99 per minute 93, 119, 84, 51, 61 ms). At the default bound "
    "(`HUB_VIEW_CACHE_MB=512`) the cache alone grows through a 5-minute run (an earlier "
    "run: 106.6 to 124.1 MiB, about 10 KiB a case, +19.3 %), which is memory spent as "
    "configured: a long-running `hub serve` grows until about 512 MiB of case documents "
    "are cached. Past the bound, in one process (`tracemalloc` snapshots compared by "
    "file), what grew with every case written was `FieldCipher._write_keys` (every "
    "participant key kept unwrapped, about 175 bytes a case): now the 4,096 most "
    "recently used (`services/crypto.py`). What still grows is data, not a leak: the "
    "dashboard totals keep one sample a case for their medians "
    "(`projections/dashboard.py`). The PostgreSQL 500s of the run before "
    "(`InvalidSqlStatementName` after a repeat's `IntegrityError` in the pipeline) are "
    "gone with the store's fix.",
    "**hostile input, token revocation**: "
    "`test_a_revoked_token_is_refused_by_a_second_app_on_the_same_store[sqlite]` failed in "
    "the report's run (refused after 1.67 s, bound 1 s) while schemathesis, the fuzz and "
    "other people's tests loaded both cores; alone it passes (2 of 2 in 1.6 s). The "
    "one-second revocation holds on an idle machine, not under that load.",
    "**crash, PostgreSQL**: a killed insert leaves its notification id unused, so the newest "
    "id overstates the events (2,087 for 2,080 in one run); the bench counts the stored "
    "events and reports the skipped ids apart. The views and the audit chain, which follow "
    "the ids, were equal to a rebuild and intact.",
]


def _named_tests() -> list[tuple[str, str]]:
    named = [test for _n, _what, tests in FINDINGS for test in tests]
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    if missing:
        raise SystemExit(
            "bench report: the table names tests that do not exist: " + ", ".join(missing)
        )
    return list(dict.fromkeys(named))


def _junit_outcomes(xml_path: Path) -> dict[str, dict[str, Any]]:
    """file::test (parameters folded) -> runs, passed, failed, skipped, seconds."""
    outcomes: dict[str, dict[str, Any]] = {}
    for case in ET.parse(xml_path).iter("testcase"):  # noqa: S314 - pytest's own file
        module = case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "").split("[", 1)[0]
        entry = outcomes.setdefault(
            f"{module}::{name}", {"runs": 0, "passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0}
        )
        entry["runs"] += 1
        entry["seconds"] += float(case.get("time", 0))
        if case.find("failure") is not None or case.find("error") is not None:
            entry["failed"] += 1
        elif case.find("skipped") is not None:
            entry["skipped"] += 1
        else:
            entry["passed"] += 1
    return outcomes


def run_tests() -> None:
    named = _named_tests()
    with tempfile.TemporaryDirectory(prefix="hub-report-") as folder:
        junit = Path(folder) / "junit.xml"
        counts = Path(folder) / "schemathesis.json"
        fuzz = Path(folder) / "fuzz.jsonl"
        env = {
            **os.environ,
            "HUB_SCHEMATHESIS_MAX_EXAMPLES": str(REPORT_SCHEMATHESIS_EXAMPLES),
            "HUB_SCHEMATHESIS_COUNT_FILE": str(counts),
            "HUB_FUZZ_EXAMPLES": str(REPORT_FUZZ_EXAMPLES),
            "HUB_FUZZ_COUNT_FILE": str(fuzz),
        }
        selected = [SCHEMATHESIS, FUZZ, *(f"{path}::{name}" for path, name in named)]
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - pytest on our own tests
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                f"--junitxml={junit}",
                *selected,
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - started
        outcomes = _junit_outcomes(junit)
        results = {
            "pytest_exit": done.returncode,
            "seconds": seconds,
            "outcomes": outcomes,
            "schemathesis": json.loads(counts.read_text()) if counts.exists() else None,
            "fuzz": [json.loads(line) for line in fuzz.read_text().splitlines()]
            if fuzz.exists()
            else [],
            "fuzz_examples_per_test": REPORT_FUZZ_EXAMPLES,
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tests.json").write_text(json.dumps(results, indent=2) + "\n")


def _load(name: str) -> tuple[dict[str, Any] | None, bool]:
    for quick in (False, True):
        path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
        if path.exists():
            return json.loads(path.read_text()), quick
    return None, False


def _rows(result: dict[str, Any], store: str | None = None) -> dict[str, dict[str, Any]]:
    """Row case (after the label's colon) -> row, for one store."""
    return {
        row["case"].split(": ", 1)[1]: row
        for row in result["rows"]
        if store is None or row["store"] == store
    }


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _verdict(rows: list[dict[str, Any]]) -> str:
    failed = [r["case"].split(": ", 1)[1] for r in rows if r["meets"] is False]
    return "**passed**" if not failed else "**FAILED**: " + "; ".join(failed)


def _soak_line(result: dict[str, Any], quick: bool) -> str:
    store = result["rows"][0]["store"]
    r = _rows(result, store)
    label = result["rows"][0]["case"].split(": ", 1)[0]
    p99 = ", ".join(f"{_n(row['value'])}" for case, row in r.items() if case.startswith("p99 "))
    windows = "per minute" if any(c.startswith("p99 minute") for c in r) else "per 10 s"
    bad = ", ".join(
        f"{case.removeprefix('bad sent: ')} {_n(row['value'])}"
        for case, row in r.items()
        if case.startswith("bad sent: ")
    )
    did = (
        f"`./dev bench soak{' --quick' if quick else ''}`: {label.removeprefix('soak ')} on "
        f"{store}, `hub serve` in its own process; {_n(r['requests answered']['value'])} "
        f"requests ({_n(r['rate answered']['value'])}/s), "
        f"{_n(r['bad messages sent']['value'])} of them bad ({bad})"
    )
    found = (
        f"accepted {_n(r['accepted (201/202)']['value'])} = recorded "
        f"{_n(r['recorded (events in the store)']['value'])}; "
        f"5xx {_n(r['5xx answers']['value'])}; bad answered otherwise "
        f"{_n(r['bad answered otherwise than expected']['value'])}; p99 {windows} (ms): {p99}; "
        f"RSS {_n(r['server RSS at the end']['baseline'])} → "
        f"{_n(r['server RSS at the end']['value'])} MiB "
        f"({r['server RSS growth']['value']:+.1f} %); view lag at the end "
        f"{_n(r['view lag at the end (max over views)']['value'])} "
        f"(caught up in {r['time until views caught up']['value']:.1f} s). "
        f"{_verdict(list(r.values()))}"
    )
    return f"| soak | {did} | {found} |"


def _crash_lines(result: dict[str, Any], quick: bool) -> list[str]:
    lines = []
    for store in dict.fromkeys(row["store"] for row in result["rows"]):
        r = _rows(result, store)
        label = next(row["case"] for row in result["rows"] if row["store"] == store)
        label = label.split(": ", 1)[0].removeprefix("crash ")
        did = (
            f"`./dev bench crash{' --quick' if quick else ''}`: {label} on {store}; "
            f"{_n(r['messages sent (distinct message_id)']['value'])} messages, each retried "
            f"with its `message_id` until acknowledged; {r['run time']['value']:.0f} s"
        )
        five = _n(r["5xx answers"]["value"]) if "5xx answers" in r else "?"
        verify = "passes" if r["hub audit verify passes"]["meets"] else "FAILS"
        found = (
            f"acknowledged {_n(r['acknowledged']['value'])} "
            f"({_n(r['acknowledged as a repeat (200) after a kill']['value'])} as a repeat "
            f"after a kill, {_n(r['retries (dropped, refused or 5xx tries)']['value'])} "
            f"retried tries, {five} 5xx); "
            f"events {_n(r['events recorded']['value'])} (one per message); "
            f"acknowledged without a receipt {_n(r['acknowledged without a receipt']['value'])}; "
            f"views {'equal' if r['views equal a rebuild']['meets'] else 'DIFFER from'} a "
            f"rebuild; `hub audit verify` {verify}; "
            f"slowest restart {r['slowest restart']['value']:.1f} s. {_verdict(list(r.values()))}"
        )
        lines.append(f"| crash | {did} | {found} |")
    return lines


def _outcome(tests: dict[str, Any], key: str) -> str:
    entry = tests["outcomes"].get(key)
    if entry is None:
        return "not run"
    if entry["failed"]:
        return f"**FAILED** {entry['failed']} of {entry['runs']}"
    if entry["skipped"] == entry["runs"]:
        return "skipped"
    return f"passed ({entry['passed']})"


def _schemathesis_line(tests: dict[str, Any]) -> str:
    counts = tests.get("schemathesis") or {}
    prefix = f"{SCHEMATHESIS}::"
    runs = {k: v for k, v in tests["outcomes"].items() if k.startswith(prefix)}
    failed = sum(v["failed"] for v in runs.values())
    seconds = sum(v["seconds"] for v in runs.values())
    statuses = Counter(counts.get("server_answers_by_status", {}))
    five = sum(n for s, n in statuses.items() if s.startswith("5"))
    did = (
        f"`{SCHEMATHESIS}` with `HUB_SCHEMATHESIS_MAX_EXAMPLES={counts.get('max_examples', '?')}`"
        f" (CI: 40): positive and negative requests from `/openapi.json` for all 12 operations, "
        f"agency and auditor tokens, over a socket; {counts.get('generated_requests', '?'):,} "
        f"generated requests in {seconds:.0f} s"
    )
    found = (
        f"server answers by status: "
        f"{', '.join(f'{s} × {n:,}' for s, n in sorted(statuses.items()))}; 5xx {five}; "
        f"schema, status-code and content-type checks: "
        f"{'all passed' if not failed else f'**{failed} test(s) FAILED**'}"
    )
    return f"| schemathesis | {did} | {found} |"


def _fuzz_line(tests: dict[str, Any]) -> str:
    lines = tests.get("fuzz", [])
    examples = sum(line["examples"] for line in lines)
    outcomes: Counter = Counter()
    for line in lines:
        outcomes.update({k: v for k, v in line.items() if k not in ("test", "examples")})
    runs = {k: v for k, v in tests["outcomes"].items() if k.startswith(f"{FUZZ}::")}
    failed = sum(v["failed"] for v in runs.values())
    seconds = sum(v["seconds"] for v in runs.values())
    did = (
        f"`{FUZZ}` (hypothesis, {tests['fuzz_examples_per_test']} examples per test and "
        f"store): arbitrary bytes, arbitrary JSON (bytes and objects), valid messages with one "
        f"part replaced, dropped or retyped, into `MessageService.record_raw` on SQLite and "
        f"PostgreSQL; {examples:,} inputs in {seconds:.0f} s"
    )
    found = (
        f"outcomes: {', '.join(f'{k} {v:,}' for k, v in outcomes.most_common())}; no other "
        f"exception, every table unchanged after each refusal: "
        f"{'passed' if not failed and runs else f'**FAILED** ({failed})'}"
    )
    return f"| message fuzz | {did} | {found} |"


def write_report() -> None:
    named = _named_tests()
    soak, soak_quick = _load("soak")
    crash, crash_quick = _load("crash")
    tests_path = RESULTS / "tests.json"
    tests = json.loads(tests_path.read_text()) if tests_path.exists() else None
    out = [
        "# Reliability report",
        "",
        "Written by `python -m bench report` (`--run-tests` reruns the test rows) from",
        "`bench/results/`; do not edit by hand. Machine: "
        + (
            f"{soak['machine']['cores']} cores, Python {soak['machine']['python']}, "
            f"soak run {soak['machine']['date']}"
            if soak
            else "no results yet"
        )
        + ".",
        "",
        "| test | what it did | what it found |",
        "| --- | --- | --- |",
    ]
    if soak:
        out.append(_soak_line(soak, soak_quick))
    if crash:
        out += _crash_lines(crash, crash_quick)
    if tests:
        out.append(_schemathesis_line(tests))
        out.append(_fuzz_line(tests))
        hostile_runs = sum(tests["outcomes"].get(f"{p}::{n}", {}).get("runs", 0) for p, n in named)
        hostile_failed = sum(
            tests["outcomes"].get(f"{p}::{n}", {}).get("failed", 0) for p, n in named
        )
        out.append(
            f"| hostile input | the {len(named)} tests the table below names "
            f"({hostile_runs} runs with their parameters, both stores where they take one) | "
            + ("all passed" if not hostile_failed else f"**{hostile_failed} FAILED**")
            + " |"
        )
    out += ["", "## Notes on the failed rows", ""]
    out += [f"- {note}" for note in NOTES]
    out += [
        "",
        "Not done here: kills of the view runner (`hub worker`), the relay and the inbox",
        "(Kafka), and the check of `hub.events.v1` for gaps and duplicates.",
        "",
        "## Hostile input: issue 13's findings and the tests that cover them",
        "",
        "| # | finding | covered by | result |",
        "| --- | --- | --- | --- |",
    ]
    for number, what, covering in FINDINGS:
        if not covering:
            out.append(f"| {number} | {what} | not on this branch (another build) | - |")
            continue
        names = "<br>".join(f"`{Path(p).name}::{n}`" for p, n in covering)
        result = (
            "; ".join(_outcome(tests, f"{p}::{n}") for p, n in covering) if tests else "not run"
        )
        out.append(f"| {number} | {what} | {names} | {result} |")
    DOC.write_text("\n".join(out) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench report")
    parser.add_argument("--run-tests", action="store_true", help="rerun the test rows first")
    args = parser.parse_args(argv)
    if args.run_tests:
        run_tests()
    write_report()
