"""``hub participant report`` as a user runs it: a real process on both stores (issue
"Trust model, part 2 — disclosure", build 4). Before it, ``participant`` had only
``erase`` (typer answered "No such command 'report'", exit 2)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from uuid import uuid4

import pytest

from services.demo import demo_id
from tests.cli_helpers import hub_cli

ROOT = Path(__file__).resolve().parents[2]
S2 = demo_id("s2/case")


def hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return hub_cli(*args, env=env)


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    loaded = hub("demo", env=env)
    assert loaded.returncode == 0, loaded.stderr
    return env


def test_participant_report_prints_json_and_writes_html(
    env: dict[str, str], tmp_path: Path
) -> None:
    shown = hub("participant", "report", str(S2), "--user", "Datenschutz Meyer", env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["case"]["pseudonym"] == "TR-0042"
    assert report["produced_by"] == {
        "role": "auditor",
        "agency": "auditor",
        "user": "Datenschutz Meyer",
        "role_label": "Prüfung (Auditor)",
    }
    assert [(d["from_agency"], d["to_agency"], d["state"]) for d in report["disclosures"]] == [
        ("jc-trier", "aa-trier", "forwarded"),
        ("aa-trier", "drv-rlp", "completed"),
    ]
    # The run is recorded as a read, and the report lists it.
    (read,) = report["reads"]
    assert (read["agency"], read["actor"], read["scope"]) == (
        "auditor",
        "Datenschutz Meyer",
        "subject-report",
    )
    assert read["categories"] == report["categories_shown"] == ["identity", "notes"]

    page = tmp_path / "auskunft.html"
    written = hub(
        "participant", "report", str(S2), "--format", "html", "--output", str(page), env=env
    )
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == f"wrote {page}"
    assert stat.S_IMODE(page.stat().st_mode) == 0o600  # personal data in clear
    html = page.read_text(encoding="utf-8")
    assert "Auskunft nach Art. 15 DSGVO" in html
    assert "Max Beispielmann" in html
    assert "weitergeleitet – kein Zugriff mehr auf das Übergebene" in html
    assert html.count("Auskunft nach Art. 15 DSGVO</td>") == 2  # both runs are listed


def test_participant_report_refusals_name_their_code(env: dict[str, str]) -> None:
    unknown = hub("participant", "report", str(uuid4()), env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error [case_not_found]:"), unknown.stderr
    assert "Traceback" not in unknown.stderr

    bad = hub("participant", "report", str(S2), "--format", "pdf", env=env)
    assert bad.returncode == 1
    assert "error [invalid_value]" in bad.stderr
