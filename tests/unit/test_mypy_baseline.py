"""The mypy baseline check (tools/mypy_baseline.py) on small inputs; ``./dev check``
runs it on the code."""

from __future__ import annotations

from collections import Counter

import pytest

from tools.mypy_baseline import (
    ROOT,
    compare,
    count_errors,
    format_baseline,
    lowered,
    parse_baseline,
)

OUTPUT = """\
services/commands.py:117: error: Item "X" of "X | Y" has no attribute "site"  [union-attr]
services/commands.py:118: error: Item "X" of "X | Y" has no attribute "site"  [union-attr]
services/commands.py:118: note: See https://mypy.readthedocs.io/
services/api/app.py:223:5: error: Need type annotation for "bearer"  [var-annotated]
services\\logging.py:44: error: List item 3 has incompatible type  [list-item]
Found 4 errors in 3 files (checked 45 source files)
"""


def test_errors_are_counted_per_file_without_notes_or_the_summary() -> None:
    assert count_errors(OUTPUT) == {
        "services/commands.py": 2,
        "services/api/app.py": 1,
        "services/logging.py": 1,
    }


def test_the_baseline_is_path_and_count_with_comments() -> None:
    text = "# header\nservices/commands.py 96  # union of payloads\n\nservices/replay.py 2\n"

    assert parse_baseline(text) == {"services/commands.py": 96, "services/replay.py": 2}


@pytest.mark.parametrize(
    "text", ["services/commands.py", "services/commands.py many", "a.py 1\na.py 2"]
)
def test_a_malformed_baseline_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"mypy-baseline\.txt:"):
        parse_baseline(text)


def test_format_and_parse_round_trip_and_drop_files_without_errors() -> None:
    counts = {"services/b.py": 3, "services/a.py": 1, "services/c.py": 0}

    assert parse_baseline(format_baseline(counts)) == {"services/a.py": 1, "services/b.py": 3}


def test_more_errors_than_the_baseline_fail() -> None:
    result = compare(Counter({"services/a.py": 3}), {"services/a.py": 2})

    assert result.failed
    assert result.above == {"services/a.py": (3, 2)}


def test_errors_in_a_file_not_in_the_baseline_fail() -> None:
    result = compare(Counter({"services/new.py": 1}), {"services/a.py": 2})

    assert result.failed
    assert result.above == {"services/new.py": (1, 0)}
    assert result.below == {"services/a.py": (0, 2)}


def test_fewer_errors_pass_and_ask_for_a_lower_baseline() -> None:
    result = compare(Counter({"services/a.py": 1}), {"services/a.py": 2, "services/b.py": 1})

    assert not result.failed
    assert result.below == {"services/a.py": (1, 2), "services/b.py": (0, 1)}


@pytest.mark.parametrize(
    "path", ["domain/case.py", "projections/case_doc.py", "tools/mypy_baseline.py"]
)
def test_the_strict_packages_get_no_baseline(path: str) -> None:
    listed = compare(Counter({path: 1}), {path: 1})
    unlisted = compare(Counter({path: 1}), {})

    assert listed.failed
    assert listed.strict_listed == [path]
    assert unlisted.above == {path: (1, 0)}


def test_update_only_lowers_counts() -> None:
    found = Counter({"services/a.py": 1, "services/b.py": 9})

    assert lowered(found, {"services/a.py": 2, "services/b.py": 4, "services/c.py": 1}) == {
        "services/a.py": 1,
        "services/b.py": 4,
        "services/c.py": 0,
    }


def test_the_committed_baseline_parses_and_lists_only_existing_non_strict_files() -> None:
    baseline = parse_baseline((ROOT / "mypy-baseline.txt").read_text(encoding="utf-8"))

    assert baseline
    for path in baseline:
        assert (ROOT / path).is_file(), path
        assert path.startswith("services/"), path
