"""Privacy by construction: crypto-shredding, consent on reads, recorded health
reads, master-key safety (both stores). That no stored byte, log line or Kafka value
holds a personal value in clear after the demo: ``test_stored_bytes.py``."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from services.access import Principal, ReadService
from services.bootstrap import Hub, build_hub
from services.crypto import ERASED, MasterKeyMismatch
from services.demo import demo_id, load_demo
from services.replay import replay_case
from services.settings import Settings
from tests import factories as f

ROOT = Path(__file__).resolve().parents[2]


def _key_material_and_events(database_url: str) -> list[tuple]:
    """Keys, the master-key check and the events, as rows (file bytes change on open)."""
    if database_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return [
                tuple(row)
                for table in ("hub_keys", "hub_key_check", "stored_events")
                for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1")
            ]
    import psycopg

    base, _, schema = database_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        return [
            tuple(row)
            for table in (
                f"{schema}_keys.hub_keys",
                f"{schema}_keys.hub_key_check",
                f"{schema}.hub_events",
            )
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1")
        ]


def test_erasure_shreds_every_copy_and_the_chain_still_verifies(
    hub: Hub, settings: Settings, database_url: str
) -> None:
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    trier = demo_id("s3/case")
    before = hub.cipher.reveal(replay_case(hub.app, trier))
    assert before["state"]["participant"]["name"] == "Lena Probst"

    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(settings.var_dir),
        "PYTHONPATH": str(ROOT),
    }
    erase = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "participant",
            "erase",
            str(trier),
            "--reason",
            "Antrag der Teilnehmerin",
            "--ground",
            "Art. 17 (1) b DSGVO",  # the case closed weeks ago: retention still runs
            "--yes",  # no terminal here to confirm at
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert erase.returncode == 0, erase.stderr.decode()

    replayed = hub.cipher.reveal(replay_case(hub.app, trier))
    opened = replayed["events"][0]["payload"]["participant"]
    assert opened["name"] == ERASED
    assert opened["contact"] == ERASED
    assert opened["pseudonym"] == "TR-0107"  # the pseudonym is not personal data
    assert [e["type"] for e in replayed["events"]][-1] == "ParticipantErased"
    assert len(replayed["events"]) == len(before["events"]) + 1  # nothing removed

    hub.views.catch_up()
    doc = hub.cipher.reveal(hub.queries.case_doc(str(trier)))
    assert doc["participant"]["fields"]["name"] == ERASED
    assert all(note["text"] == ERASED for note in doc["notes"])
    hub.views.rebuild()
    rebuilt = hub.cipher.reveal(hub.queries.case_doc(str(trier)))
    assert rebuilt["participant"]["fields"] == doc["participant"]["fields"]
    # Scenario 5's participant, erased by the demo itself, reads as erased too.
    aachen = hub.cipher.reveal(replay_case(hub.app, demo_id("s5/case")))
    assert aachen["events"][0]["payload"]["participant"]["name"] == ERASED

    verify = subprocess.run(
        [sys.executable, "-m", "services.cli", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr.decode()
    assert "intact" in verify.stdout.decode()


def _health_case(hub: Hub) -> tuple[UUID, ReadService]:
    clinic, coach = "clinic-p", "coach-p"
    hub.registry.register(clinic, "psychiatric_clinic", "Klinik P")
    hub.registry.register(coach, "coaching_provider", "Coaching P")
    case_id = f.new_id()
    hub.messages.record_raw(f.opened(clinic, case_id))
    hub.messages.record_raw(
        f.consent(
            clinic,
            case_id,
            consent_id="h1",
            categories=["health"],
            source=clinic,
            recipients=[coach],
        )
    )
    hub.messages.record_raw(
        f.offer(clinic, case_id, f.new_id(), kind="discharge", to=coach, categories=["health"])
    )
    hub.messages.record_raw(
        f.message(
            "note.added",
            clinic,
            case_id,
            {"text": "Diagnose F32.1, stabil", "category": "health"},
            day=1,
        )
    )
    hub.views.catch_up()
    reads = ReadService(hub.app, hub.queries, hub.messages, hub.view_store, hub.cipher)
    return case_id, reads


def test_consent_revoked_then_read_the_category_is_gone(hub: Hub) -> None:
    case_id, reads = _health_case(hub)
    coach = Principal("agency", "coach-p", "Coaching P")

    assert [n["text"] for n in reads.case(coach, str(case_id))["notes"]] == [
        "Diagnose F32.1, stabil"
    ]
    hub.messages.record_raw(
        # through the source: the coach may not revoke the clinic's consent
        f.message("consent.revoked", "clinic-p", case_id, {"consent_id": "h1"}, day=2)
    )
    hub.views.catch_up()

    after = reads.case(coach, str(case_id))
    assert after["notes"] == []
    assert "health" not in after["categories_shown"]
    clinic = Principal("agency", "clinic-p", "Klinik P")
    assert len(reads.case(clinic, str(case_id))["notes"]) == 1  # the source still sees it


def test_reads_of_health_data_show_in_the_auditors_history(hub: Hub) -> None:
    case_id, reads = _health_case(hub)
    reads.case(Principal("agency", "coach-p", "Coaching P"), str(case_id))
    hub.views.catch_up()

    auditor = Principal("auditor", "Prüferin A", "Prüferin A")
    items = reads.history(auditor, str(case_id))["items"]
    health_reads = [i for i in items if i["type"] == "CaseRead"]
    assert len(health_reads) == 1
    read = health_reads[0]
    assert read["agency"] == "coach-p"
    assert read["payload"]["categories"] == ["health"]
    assert read["payload"]["role"] == "agency"
    assert read["recorded_at"] is not None
    # The auditor's own read is recorded too, and shows to the next auditor.
    hub.views.catch_up()
    again = reads.history(auditor, str(case_id))["items"]
    assert [i["payload"].get("scope") for i in again if i["type"] == "CaseRead"][-1] == "history"


def test_wrong_master_key_is_a_clear_error_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    right = base64.b64encode(secrets.token_bytes(32)).decode()
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    first = build_hub(Settings(database_url=database_url, var_dir=tmp_path, master_key=right))
    first.registry.register("jc-k", "jobcenter", "JC")
    case_id = f.new_id()
    first.messages.record_raw(
        f.opened("jc-k", case_id, participant={"pseudonym": "K-1", "name": "Karl Klar"})
    )
    first.close()
    stored_before = _key_material_and_events(database_url)

    with pytest.raises(MasterKeyMismatch) as refused:
        build_hub(Settings(database_url=database_url, var_dir=tmp_path, master_key=wrong))
    assert refused.value.code == "master_key_mismatch"

    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_MASTER_KEY": wrong,
        "PYTHONPATH": str(ROOT),
    }
    cli = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", str(case_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 1
    assert b"master_key_mismatch" in cli.stderr
    assert b"Traceback" not in cli.stderr
    assert b"Karl" not in cli.stdout + cli.stderr
    assert _key_material_and_events(database_url) == stored_before  # nothing overwritten

    again = build_hub(Settings(database_url=database_url, var_dir=tmp_path, master_key=right))
    try:
        state = again.cipher.reveal(replay_case(again.app, case_id))["state"]
        assert state["participant"]["name"] == "Karl Klar"
    finally:
        again.close()


def test_embedded_master_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}", var_dir=tmp_path / "var")
    hub = build_hub(settings)
    hub.close()
    key_file = tmp_path / "var" / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_text()
    build_hub(settings).close()
    assert key_file.read_text() == content


def test_events_stored_before_schema_v2_load_through_the_upcaster(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    copy = tmp_path / "old.db"
    shutil.copy(ROOT / "tests" / "fixtures" / "hub-v1.db", copy)
    with sqlite3.connect(copy) as conn:
        states = [
            row[0]
            for row in conn.execute(
                "SELECT state FROM stored_events WHERE topic LIKE '%HandoverOffered'"
            )
        ]
    assert states
    assert all(b'"priority"' not in s and b"class_version" not in s for s in states)

    hub = build_hub(Settings(database_url=f"sqlite:///{copy}", var_dir=tmp_path / "var"))
    try:
        case = hub.app.repository.get(demo_id("s2/case"))
        assert {h.priority for h in case.handovers.values()} == {"normal"}
        hub.views.rebuild()
        doc = hub.queries.case_doc(str(demo_id("s2/case")))
        assert {h["priority"] for h in doc["handovers"].values()} == {"normal"}

        now = datetime.now(UTC)
        offer = f.offer(
            "jc-trier", demo_id("s2/case"), f.new_id(), kind="rehab_application", to="aa-trier"
        )
        offer["payload"]["priority"] = "urgent"
        offer["occurred_at"] = (now - timedelta(hours=1)).isoformat()
        hub.messages.record_raw(offer)
        latest = hub.app.store.select_case_events(demo_id("s2/case"))[-1]
        assert b'"class_version":2' in latest.state
        reloaded = hub.app.repository.get(demo_id("s2/case"))
        assert sorted(h.priority for h in reloaded.handovers.values()) == [
            "normal",
            "normal",
            "urgent",
        ]
    finally:
        hub.close()
