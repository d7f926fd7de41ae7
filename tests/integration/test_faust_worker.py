"""The faust worker's figures equal the in-process dashboard for the same events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from services.bootstrap import Hub
from services.demo import load_demo
from services.kafka import Relay
from services.settings import Settings
from tests.kafka_broker import (  # noqa: F401 - fixtures
    KafkaNames,
    free_port,
    kafka_bootstrap,
    kafka_names,
    kafka_settings,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.kafka


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return json.loads(response.read())
    except OSError:
        return None


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        text = response.read().decode()
    return {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_faust_worker_figures_equal_the_in_process_dashboard(
    hub: Hub,
    settings: Settings,
    kafka_bootstrap: str,  # noqa: F811 - the imported fixture
    kafka_names: KafkaNames,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    configured = kafka_settings(settings, kafka_bootstrap, kafka_names)
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    relay = Relay(hub, configured)
    try:
        published = relay.run_until_caught_up(timeout=60)
    finally:
        relay.close()
    assert published > 60

    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HUB_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HUB_KAFKA_EVENTS_TOPIC": kafka_names.events_topic,
        "HUB_KAFKA_EVENTS_PARTITIONS": "3",
        "HUB_WORKER_WEB_PORT": str(port),
        "HUB_METRICS_PORT": str(metrics_port),
        "HUB_VAR_DIR": str(tmp_path / "worker"),
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "worker", "-l", "warn"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    expected = hub.queries.dashboard(now)
    try:
        deadline = time.monotonic() + 90
        figures = None
        while time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            figures = _get(f"http://127.0.0.1:{port}/dashboard?now={quote(now.isoformat())}")
            if (
                figures is not None
                and figures["cases_by_stage"] == expected["cases_by_stage"]
                and figures["handovers_by_state"] == expected["handovers_by_state"]
            ):
                break
            time.sleep(0.5)
        assert figures is not None, (tmp_path / "worker.log").read_text()[-3000:]
        assert figures == expected
        # Its own /metrics: every envelope folded once, and the process's figures.
        applied = 'hub_worker_events_total{outcome="applied"}'
        scraped = _metrics(f"http://127.0.0.1:{metrics_port}/metrics")
        while scraped.get(applied, 0) < published and time.monotonic() < deadline:
            time.sleep(0.2)  # the figures can match before the last envelopes are folded
            scraped = _metrics(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped[applied] == published, (tmp_path / "worker.log").read_text()[-3000:]
        assert scraped.get('hub_worker_events_total{outcome="failed"}', 0) == 0
        assert scraped["process_resident_memory_bytes"] > 0
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
