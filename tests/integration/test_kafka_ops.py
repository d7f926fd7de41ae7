"""Operating the Kafka side against a real broker (Tansu): ``/metrics`` of ``hub relay``
and ``hub inbox`` (their own processes, their own ports), what ``hub serve`` counts
and reports when it runs them in-process, and the dead letters listed and replayed
with ``hub dlq``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from services.api.app import create_app
from services.api.metrics import ApiMetrics
from services.bootstrap import Hub, build_hub
from services.demo import load_demo, register_demo_agencies
from services.kafka import start_background
from services.settings import Settings
from tests import factories, kafka_broker
from tests.kafka_broker import KafkaNames, free_port, kafka_settings, start_broker, wait_until
from tests.kafka_helpers import ROOT, agency_producer, hub_cli, hub_env, running_inbox, send

pytestmark = [pytest.mark.kafka]

kafka_bootstrap = kafka_broker.kafka_bootstrap
kafka_names = kafka_broker.kafka_names

NOTE_TEXT = "Rueckruf bei Frau Beispielname vereinbart"  # stands for personal content (ASCII:
# json.dumps escapes anything else, and the marker must be found as sent)


@contextmanager
def hub_process(command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``hub relay`` / ``hub inbox`` in its own process; SIGTERM afterwards (exit 0)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", command],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                raise
            assert code == 0, log.read_text()[-2000:]


def scrape(port: int) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return samples(text)


def samples(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
    }


def scrape_until(port: int, wanted: dict[str, float], process: Any, log: Path) -> dict[str, float]:
    deadline = time.monotonic() + 60
    figures: dict[str, float] | None = None
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        figures = scrape(port)
        if figures is not None and all(figures.get(k) == v for k, v in wanted.items()):
            return figures
        time.sleep(0.2)
    shown = {k: (figures or {}).get(k) for k in wanted}
    raise AssertionError(f"metrics never showed {wanted}: {shown}\n{log.read_text()[-2000:]}")


def note(agency: str, case_id: Any, text: str = NOTE_TEXT) -> dict[str, Any]:
    return factories.message(
        "note.added", agency, case_id, {"text": text, "category": "notes"}, day=1
    )


# ---- /metrics of hub relay and hub inbox -----------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_hub_relay_serves_its_lag_and_what_it_published(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames, tmp_path: Path
) -> None:
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    head = hub.app.recorder.max_notification_id() or 0
    events = sum(
        1
        for n in hub.app.recorder.select_notifications(1, 10_000)
        if n.topic.startswith("domain.case:")
    )
    port = free_port()
    env = hub_env(settings, kafka_bootstrap, kafka_names, HUB_METRICS_PORT=str(port))
    log = tmp_path / "relay.log"
    with hub_process("relay", env, log) as relay:
        figures = scrape_until(
            port, {"hub_relay_lag_events": 0, "hub_relay_published_total": events}, relay, log
        )
        assert figures['hub_projection_lag_events{view="cases"}'] == 0
        assert figures["process_resident_memory_bytes"] > 0
        assert any(name.startswith("python_info{") for name in figures)

        # What is recorded now shows as lag until the relay has published it.
        case_id = factories.new_id()
        hub.messages.record_raw(json.dumps(factories.opened("jc-trier", case_id)).encode())
        assert (hub.app.recorder.max_notification_id() or 0) == head + 1
        scrape_until(
            port,
            {"hub_relay_lag_events": 0, "hub_relay_published_total": events + 1},
            relay,
            log,
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_hub_inbox_counts_by_type_and_refusals_by_code(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames, tmp_path: Path
) -> None:
    register_demo_agencies(hub.registry)
    port = free_port()
    env = hub_env(settings, kafka_bootstrap, kafka_names)
    log = tmp_path / "inbox.log"
    case_id = factories.new_id()
    opened = factories.opened("jc-trier", case_id)
    with (
        hub_process("inbox", {**env, "HUB_METRICS_PORT": str(port)}, log) as inbox,
        agency_producer(kafka_bootstrap) as producer,
    ):
        send(producer, "jc-trier", json.dumps(opened).encode(), key="k")
        send(producer, "jc-trier", json.dumps(note("jc-trier", case_id)).encode(), key="k")
        send(producer, "jc-trier", json.dumps(opened).encode(), key="k")  # redelivered: duplicate
        send(producer, "jc-trier", b"{not json", key="k")
        send(producer, "aa-trier", json.dumps(note("jc-trier", case_id)).encode(), key="k")
        figures = scrape_until(
            port,
            {
                'hub_messages_recorded_total{entrypoint="kafka",type="case.opened"}': 1,
                'hub_messages_recorded_total{entrypoint="kafka",type="note.added"}': 1,
                'hub_messages_duplicate_total{entrypoint="kafka"}': 1,
                'hub_dlq_records_total{code="malformed_json"}': 1,
                'hub_dlq_records_total{code="agency_mismatch"}': 1,
                'hub_refusals_total{code="malformed_json",entrypoint="kafka"}': 1,
                'hub_refusals_total{code="agency_mismatch",entrypoint="kafka"}': 1,
            },
            inbox,
            log,
        )
        assert figures["process_open_fds"] > 0
        assert any(name.startswith('hub_projection_lag_events{view="audit"}') for name in figures)
    assert NOTE_TEXT not in log.read_text()


def test_a_metrics_port_in_use_is_one_line_naming_the_setting(
    settings: Settings, kafka_names: KafkaNames
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = hub_env(settings, "127.0.0.1:1", kafka_names, HUB_METRICS_PORT=str(port))
        for command in ("relay", "inbox"):
            done = hub_cli(command, env=env)
            assert done.returncode == 1, done.stderr
            lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
            assert lines == [
                f"error [metrics_port_unavailable]: cannot serve metrics on 127.0.0.1:{port} "
                "(Address already in use); set HUB_METRICS_PORT to a free port, or 0 for none"
            ], done.stderr
            assert "Traceback" not in done.stderr


# ---- hub serve: the relay and inbox in-process -----------------------------------------


def test_hub_serve_counts_kafka_messages_and_reports_the_broker(
    hub: Hub, settings: Settings, kafka_names: KafkaNames
) -> None:
    register_demo_agencies(hub.registry)
    tokens = {"jc-trier": hub.tokens.issue_agency_token("jc-trier")}
    broker = start_broker()
    stopped = False
    served = build_hub(kafka_settings(settings, broker.bootstrap, kafka_names, ready_timeout_s=2.0))
    metrics = ApiMetrics()
    background = start_background(served, metrics)
    assert background is not None
    try:
        with (
            TestClient(create_app(served, metrics=metrics)) as client,
            agency_producer(broker.bootstrap) as producer,
        ):
            case_id = factories.new_id()
            opened = factories.opened("jc-trier", case_id)
            send(producer, "jc-trier", json.dumps(opened).encode(), key="k")
            wait_until(
                lambda: served.app.store.find_receipt(UUID(opened["message_id"])) is not None,
                40,
                "the case opened over Kafka",
            )
            jc = {"Authorization": f"Bearer {tokens['jc-trier']}"}
            posted = client.post("/v1/messages", json=note("jc-trier", case_id), headers=jc)
            assert posted.status_code == 201, posted.text
            figures = samples(client.get("/metrics").text)
            assert (
                figures['hub_messages_recorded_total{entrypoint="kafka",type="case.opened"}'] == 1
            )
            assert figures['hub_messages_recorded_total{entrypoint="http",type="note.added"}'] == 1
            assert "hub_relay_lag_events" in figures

            answer = client.get("/readyz")
            assert answer.status_code == 200, answer.text
            assert answer.json()["checks"]["kafka"]["ok"]
            assert answer.json()["checks"]["kafka"]["reason"].startswith("reachable")

            broker.stop()
            stopped = True
            started = time.monotonic()
            answer = client.get("/readyz")
            assert time.monotonic() - started < 5
            assert answer.status_code == 503, answer.text
            kafka = answer.json()["checks"]["kafka"]
            assert not kafka["ok"]
            assert broker.bootstrap not in kafka["reason"]
            assert answer.json()["checks"]["database"]["ok"]
    finally:
        background.stop(timeout=30)
        if not stopped:
            broker.stop()
        served.close()


# ---- hub dlq list / replay ---------------------------------------------------------------


def test_dead_letters_are_listed_without_content_and_replayed_idempotently(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    register_demo_agencies(hub.registry)
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    env = hub_env(settings, kafka_bootstrap, kafka_names)
    case_id = factories.new_id()
    early = note("jc-trier", case_id)  # before its case exists: refused
    with running_inbox(hub, ks) as inbox, agency_producer(kafka_bootstrap) as producer:
        send(producer, "jc-trier", json.dumps(early).encode(), key="k")
        send(producer, "jc-trier", b'{"broken": ', key="k")
        wait_until(lambda: inbox.stats.dead_lettered == 2, 40, "two dead letters")

    listed = hub_cli("dlq", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    # Keyless letters (the original key "k" is withheld: not a UUID) land on any of the
    # dead-letter topic's partitions, and the listing goes partition by partition: the
    # two may come in either order.
    rows = sorted((line.split("\t") for line in listed.stdout.splitlines()), key=lambda row: row[2])
    assert [row[2] for row in rows] == ["case_not_found", "malformed_json"], listed.stdout
    for letter_id, moment, _, size, source, message in rows:
        assert letter_id.count(":") == 1
        written = datetime.fromisoformat(moment)
        assert abs(written - datetime.now(UTC)) < timedelta(minutes=5)
        assert int(size) > 0
        assert source.startswith("hub.inbox.jc-trier[")
        assert message
    assert NOTE_TEXT not in listed.stdout + listed.stderr  # no content without --show
    assert "2 dead letters" in listed.stderr

    shown = hub_cli("dlq", "list", "--show", env=env)
    assert NOTE_TEXT in shown.stdout
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert hub_cli("dlq", "list", "--since", later, env=env).stdout == ""
    bad_since = hub_cli("dlq", "list", "--since", "yesterday", env=env)
    assert bad_since.returncode == 1
    assert bad_since.stderr.strip() == "error [invalid_value]: --since is an ISO 8601 moment"

    refused, broken = rows[0][0], rows[1][0]
    # The cause went away: the case is opened now. The replay records the note once.
    hub.messages.record_raw(json.dumps(factories.opened("jc-trier", case_id)).encode())
    first = hub_cli("dlq", "replay", refused, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"{refused}\trecorded\tposition ")
    assert hub.app.store.find_receipt(UUID(early["message_id"])) is not None
    events = hub.app.recorder.max_notification_id()
    again = hub_cli("dlq", "replay", refused, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"{refused}\tduplicate\t")
    assert hub.app.recorder.max_notification_id() == events

    still = hub_cli("dlq", "replay", broken, refused, env=env)
    assert still.returncode == 1
    lines = still.stdout.splitlines()
    assert lines[0].startswith(f"{broken}\trefused\t[malformed_json] ")
    assert lines[1].startswith(f"{refused}\tduplicate\t")

    missing = hub_cli("dlq", "replay", "0:999", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error [dlq_offset_not_found]: no dead letter 0:999"
    bare = hub_cli("dlq", "replay", "0", env=env)
    assert bare.returncode == 1
    assert bare.stderr.startswith("error [invalid_value]: 0: the dead-letter topic has")
    for done in (first, again, still, missing, bare, listed):
        assert "Traceback" not in done.stderr
        assert NOTE_TEXT not in done.stdout + done.stderr


# ---- TLS ------------------------------------------------------------------------------


@contextmanager
def broker_behind_tls(folder: Path) -> Iterator[tuple[str, Path]]:
    """Tansu (plaintext, loopback) behind a TLS-terminating proxy; it advertises the
    proxy's address, so every connection a client makes speaks TLS. Yields the
    bootstrap address and the CA file that verifies it."""
    from bench.tansu import BrokerUnavailable, accepts_connections, tansu_binary
    from tests.tcp_proxy import proxy_to
    from tests.tls_certs import make_certificates

    certificates = make_certificates(folder)
    port = free_port()
    try:
        binary = tansu_binary()
    except BrokerUnavailable as error:
        pytest.skip(str(error))
    with proxy_to("127.0.0.1", port, tls=certificates.server_context()) as proxy:
        url = f"tcp://{proxy.address}"
        log = (folder / "tansu.log").open("wb")
        process = subprocess.Popen(  # our own binary, fixed arguments
            [
                binary,
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: accepts_connections(port), 20, "Tansu to listen")
            yield proxy.address, certificates.ca_file
        finally:
            process.terminate()
            process.wait(timeout=10)
            log.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_relay_inbox_and_dead_letters_speak_tls_and_verify_the_broker(
    hub: Hub, settings: Settings, kafka_names: KafkaNames, tmp_path: Path
) -> None:
    from services.kafka.dlq import DeadLetterTopic
    from services.kafka.relay import Relay
    from tests.tls_certs import make_certificates

    register_demo_agencies(hub.registry)
    with broker_behind_tls(tmp_path / "tls") as (bootstrap, ca_file):
        tls = kafka_settings(
            settings,
            bootstrap,
            kafka_names,
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=ca_file,
        )
        case_id = factories.new_id()
        opened = factories.opened("jc-trier", case_id)
        with running_inbox(hub, tls) as inbox:
            producer = KafkaProducer(
                bootstrap_servers=bootstrap, security_protocol="SSL", ssl_cafile=str(ca_file)
            )
            try:
                send(producer, "jc-trier", json.dumps(opened).encode(), key="k")
                send(producer, "jc-trier", b"not json", key="k")
            finally:
                producer.close(timeout=10)
            wait_until(
                lambda: inbox.stats.recorded == 1 and inbox.stats.dead_lettered == 1,
                40,
                "the message recorded and the bad one dead-lettered, over TLS",
            )
        relay = Relay(hub, tls)
        try:
            assert relay.run_until_caught_up(timeout=30) == 1
        finally:
            relay.close()
        assert [letter.code for letter in DeadLetterTopic(tls).read()] == ["malformed_json"]

        # A broker whose certificate the configured CA did not sign is not talked to.
        stranger = make_certificates(tmp_path / "other", name="other")
        untrusting = tls.model_copy(update={"kafka_ssl_cafile": stranger.ca_file})
        relay = Relay(hub, untrusting)
        hub.messages.record_raw(json.dumps(note("jc-trier", case_id)).encode())
        try:
            with pytest.raises(TimeoutError):
                relay.run_until_caught_up(timeout=5)
        finally:
            relay.close()
        assert relay.published == 0
