"""``hub``: the command line. Each command parses, calls a service, renders."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from domain.errors import DomainError
from domain.values import AgencyKind
from services.api.limits import HttpLimits
from services.bootstrap import Hub, StoreUnavailable, build_hub
from services.crypto import CryptoError
from services.errors import ServiceError
from services.logging import configure_logging
from services.settings import Settings

app = typer.Typer(
    help="Coordination hub for agencies sharing responsibility for a participant's way "
    "into work. Configure with HUB_* environment variables (HUB_DATABASE_URL, "
    "HUB_VAR_DIR, HUB_LOG_FORMAT, HUB_DEADLINE_POLICY_FILE, HUB_KAFKA_BOOTSTRAP).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
agency_app = typer.Typer(help="The agency registry.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
participant_app = typer.Typer(help="A participant's personal data.", no_args_is_help=True)
projections_app = typer.Typer(help="Views built from the events.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(agency_app, name="agency")
app.add_typer(token_app, name="token")
app.add_typer(projections_app, name="projections")
app.add_typer(participant_app, name="participant")
app.add_typer(audit_app, name="audit")


def _fail(code: str, message: str, exit_code: int = 1) -> typer.Exit:
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(exit_code)


@contextmanager
def _hub() -> Iterator[Hub]:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        hub = build_hub(settings)
    except (StoreUnavailable, CryptoError) as error:
        raise _fail(error.code, str(error)) from None
    try:
        yield hub
    except (DomainError, ServiceError) as refusal:
        raise _fail(refusal.code, refusal.message) from None
    finally:
        hub.close()


@agency_app.command("add")
def agency_add(
    agency_id: Annotated[str, typer.Argument(metavar="ID", help="short id, e.g. jc-trier")],
    kind: Annotated[AgencyKind, typer.Option(help="the agency's kind")],
    name: Annotated[str, typer.Option(help="display name")],
) -> None:
    """Register an agency and print a new bearer token for it (last line)."""
    from pydantic import TypeAdapter, ValidationError

    from services.messages import AgencyId

    try:
        TypeAdapter(AgencyId).validate_python(agency_id)
    except ValidationError:
        raise _fail(
            "invalid_value", "an agency id is 2-64 of a-z, 0-9, '.', '_', '-', e.g. jc-trier"
        ) from None
    with _hub() as hub:
        agency = hub.registry.register(agency_id, kind, name)
        token = hub.tokens.issue_agency_token(agency_id)
    typer.echo(f"registered agency {agency['agency_id']} ({agency['kind']}): {agency['name']}")
    typer.echo("bearer token (shown once; only its hash is stored):")
    typer.echo(token)


@agency_app.command("list")
def agency_list() -> None:
    """List registered agencies."""
    with _hub() as hub:
        for agency in hub.registry.all():
            typer.echo(f"{agency['agency_id']}\t{agency['kind']}\t{agency['name']}")


@agency_app.command("token")
def agency_token(agency_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Issue another bearer token for a registered agency (last line)."""
    with _hub() as hub:
        token = hub.tokens.issue_agency_token(agency_id)
    typer.echo(f"new bearer token for {agency_id}:")
    typer.echo(token)


@token_app.command("auditor")
def token_auditor(name: Annotated[str, typer.Option(help="the auditor's name")]) -> None:
    """Print a new auditor token (last line)."""
    if not name.strip():
        raise _fail("invalid_value", "an auditor needs a name")
    with _hub() as hub:
        token = hub.tokens.issue_auditor_token(name.strip())
    typer.echo(f"auditor token for {name.strip()} (shown once; only its hash is stored):")
    typer.echo(token)


@app.command()
def record(
    source: Annotated[str, typer.Argument(help="a JSON message file, or - for stdin")],
) -> None:
    """Record one handover message (the same schema as HTTP and Kafka)."""
    from services.messages import MessageInvalid

    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    with _hub() as hub:
        try:
            result = hub.messages.record_raw(raw)
        except MessageInvalid as error:
            typer.echo(json.dumps(error.details, indent=2), err=True)
            raise _fail(error.code, error.message) from None
    typer.echo(json.dumps(result))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="load the five scenarios and print demo tokens first")
    ] = False,
    max_header_bytes: Annotated[
        int,
        typer.Option(min=1024, help="request line and headers at most (else 431)"),
    ] = HttpLimits.max_head_bytes,
    read_timeout: Annotated[
        float,
        typer.Option(min=0.1, help="seconds a client has for a request's head, and for its body"),
    ] = HttpLimits.read_timeout,
) -> None:
    """HTTP API and dashboard (views kept current in-process)."""
    import uvicorn

    from services.api.app import create_app
    from services.api.server import uvicorn_options

    limits = HttpLimits(max_head_bytes=max_header_bytes, read_timeout=read_timeout)
    with _hub() as hub:
        if with_demo:
            _load_demo_and_print_tokens(hub, host, port)
        hub.views.catch_up()
        background = _start_kafka_in_process(hub)
        if background is None:
            _survive_reraised_signals()
        typer.echo(f"serving on http://{host}:{port}  (dashboard: http://{host}:{port}/dashboard)")
        try:
            api = create_app(hub, limits=limits)
            uvicorn.run(api, host=host, port=port, **uvicorn_options(api))
        finally:
            if background is not None:
                background.stop()


def _start_kafka_in_process(hub: Hub) -> Any:
    """Relay and inbox as threads of ``hub serve`` (HUB_SERVE_KAFKA=false: run them apart)."""
    if not hub.settings.kafka_bootstrap or not hub.settings.serve_kafka:
        return None
    import signal

    from services.kafka import start_background

    background = start_background(hub)
    if background is not None:
        # uvicorn restores these handlers after its graceful shutdown and then
        # re-raises the signal: it should stop relay and inbox, not end the process.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: background.stop_event.set())
    return background


def _survive_reraised_signals() -> None:
    """uvicorn shuts down gracefully on SIGTERM or SIGINT, restores the handlers it
    found and raises the signal again: with the default ones, that ended the process
    (exit -15) before the hub was closed. Once uvicorn has returned, there is nothing
    left for the signal to stop."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


def _load_demo_and_print_tokens(hub: Hub, host: str, port: int) -> None:
    from services.demo import DemoFailed, load_demo

    try:
        reports = list(load_demo(hub.registry, hub.messages))
    except DemoFailed as error:
        raise _fail(error.code, str(error)) from None
    recorded = sum(r.recorded for r in reports)
    typer.echo(f"demo: five scenarios loaded ({recorded} new messages recorded)")
    typer.echo("demo tokens (new each start; only their hashes are stored):")
    for agency_id in ("jc-trier", "kopra-erzgebirge", "drv-rlp"):
        typer.echo(f"  {agency_id:<18} {hub.tokens.issue_agency_token(agency_id)}")
    typer.echo(f"  {'auditor':<18} {hub.tokens.issue_auditor_token('Demo-Prüferin')}")
    typer.echo(f"dashboard: http://{host}:{port}/dashboard  (sign in with a token above)")


@app.command()
def demo() -> None:
    """Load DOMAIN.md's five scenarios (idempotent) and print where to look."""
    from services.demo import DemoFailed, load_demo

    with _hub() as hub:
        store = hub.settings.effective_database_url
        typer.echo(f"loading the five scenarios into {_redact(store)}")
        try:
            reports = list(load_demo(hub.registry, hub.messages))
        except DemoFailed as error:
            raise _fail(error.code, str(error)) from None
        hub.views.catch_up()
    for r in reports:
        refused = (
            f", refused as expected: {', '.join(r.refused_as_expected)}"
            if r.refused_as_expected
            else ""
        )
        typer.echo(
            f"  {r.number}. {r.title}\n     case {r.case_id}: "
            f"{r.recorded} recorded, {r.duplicates} already there{refused}"
        )
    typer.echo("look at a case's history and state with:")
    typer.echo(f"  hub replay {reports[0].case_id}")
    typer.echo(
        f"  hub replay {reports[1].case_id} --as-of 2026-03-12T00:00:00+01:00 --axis occurred"
    )


@app.command()
def replay(
    case_id: Annotated[UUID, typer.Argument(metavar="CASE_ID")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="ISO 8601 moment with timezone")
    ] = None,
    axis: Annotated[
        str, typer.Option(help="recorded (hub clock, default) or occurred (agency clock)")
    ] = "recorded",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The case's events in order and its state rebuilt as of that moment."""
    from services.replay import replay_case

    if axis not in ("recorded", "occurred"):
        raise _fail("invalid_value", "--axis is recorded or occurred")
    moment = _parse_moment(as_of) if as_of is not None else None
    with _hub() as hub:
        result = hub.cipher.reveal(replay_case(hub.app, case_id, moment, axis))  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _print_replay(result)


def _parse_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail("invalid_value", "--as-of is an ISO 8601 moment") from None
    if moment.tzinfo is None:
        raise _fail("invalid_value", "--as-of needs a timezone, e.g. 2026-03-01T00:00:00+01:00")
    return moment


def _print_replay(result: dict[str, Any]) -> None:
    moment = f" as of {result['as_of']} ({result['axis']})" if result["as_of"] else ""
    typer.echo(f"case {result['case_id']}{moment}: {len(result['events'])} events")
    for e in result["events"]:
        typer.echo(
            f"  #{e['position']:<6} v{e['version']:<3} {e['occurred_at']}  "
            f"{e['type']:<22} {e['agency']} / {e['actor']}"
        )
    state = result["state"]
    if state is None:
        typer.echo("no state at that moment")
        return
    typer.echo(
        f"stage {state['stage']}"
        + (f" (outcome {state['outcome']})" if state["outcome"] else "")
        + f", lead {state['lead_agency']}, agencies {', '.join(state['agencies'])}"
    )
    for h in state["handovers"]:
        typer.echo(
            f"  handover {h['handover_id']} {h['kind']}: {h['from_agency']} -> "
            f"{h['to_agency']} [{h['state']}] due {h['due_at']}"
        )


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option(help="write to this file")] = None,
) -> None:
    """Print (or write) the JSON Schema of every message type."""
    from services.messages import message_json_schema

    text = json.dumps(message_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}")


@participant_app.command("erase")
def participant_erase(
    case_id: Annotated[UUID, typer.Argument(metavar="CASE_ID")],
    reason: Annotated[str, typer.Option(help="why (e.g. retention period ended)")],
    actor: Annotated[str, typer.Option(help="who erases, as recorded")] = "operator",
    ground: Annotated[
        str | None,
        typer.Option(help="an Art. 17 GDPR ground, to erase before closure and retention"),
    ] = None,
) -> None:
    """Erase a participant's personal data: destroys their key (crypto-shredding).
    Allowed after the case closed and its programme's retention period ended, or
    earlier with a recorded Art. 17 ground."""
    from datetime import UTC
    from uuid import uuid4

    from services.messages import parse_message

    message = parse_message(
        {
            "message_id": str(uuid4()),
            "type": "participant.erased",
            "agency": "auditor",
            "case_id": str(case_id),
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": actor,
            "payload": {"reason": reason, **({"ground": ground} if ground else {})},
        }
    )
    with _hub() as hub:
        result = hub.messages.record(message, as_auditor=True)
        hub.views.catch_up()
    typer.echo(
        f"erased the personal data of case {case_id} (event at position {result['position']}); "
        "its history and audit chain remain"
    )


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[
        str | None, typer.Argument(help="cases (inbox, caseload, case views), dashboard, audit")
    ] = None,
) -> None:
    """Drop and rebuild views from the event store, with a progress bar."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from services.views.rebuild import rebuild_views
    from services.views.store import GROUPS

    if name is not None and name not in GROUPS:
        raise _fail("invalid_value", f"unknown view {name!r}; one of {', '.join(GROUPS)}")
    groups = GROUPS if name is None else (name,)
    with _hub() as hub:
        total = hub.app.recorder.max_notification_id() or 0
        started = time.perf_counter()
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=not sys.stdout.isatty(),
        ) as bar:
            task = bar.add_task(f"rebuilding {', '.join(groups)}", total=max(total, 1))
            applied = rebuild_views(
                hub, groups, progress=lambda done, _total: bar.update(task, completed=done)
            )
        seconds = time.perf_counter() - started
    rate = applied / seconds if seconds > 0 else 0.0
    typer.echo(
        f"rebuilt {', '.join(groups)}: {applied} events in {seconds:.2f} s ({rate:,.0f} events/s)"
    )


@projections_app.command("status")
def projections_status() -> None:
    """Each view's position against the newest recorded event."""
    with _hub() as hub:
        head = hub.app.recorder.max_notification_id() or 0
        for group, position in hub.views.positions().items():
            typer.echo(f"{group}\t{position}\t(lag {head - position})")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain from the stored events; exit 1 naming the first break."""
    from services.views.verify import verify_chain

    with _hub() as hub:
        hub.views.catch_up()
        result = verify_chain(hub.app.recorder, hub.view_store)
    if result.ok:
        typer.echo(
            f"audit trail intact: {result.events_checked} events checked, head {result.head_hash}"
        )
        return
    typer.echo(
        f"audit trail BROKEN at position {result.first_broken_position}: {result.reason} "
        f"({result.events_checked} events verified before it)",
        err=True,
    )
    raise typer.Exit(1)


@app.command()
def relay() -> None:
    """Publish every recorded case event to Kafka (hub.events.v1) until SIGTERM/SIGINT."""
    from services.kafka.relay import Relay

    with _hub() as hub:
        _require_kafka(hub)
        _run_until_signal(Relay(hub).run)


@app.command()
def inbox() -> None:
    """Record agency messages from Kafka (hub.inbox.<agency>) until SIGTERM/SIGINT."""
    from services.kafka.inbox import Inbox

    with _hub() as hub:
        _require_kafka(hub)
        _run_until_signal(Inbox(hub).run)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """The faust-streaming dashboard worker on hub.events.v1 (extra args go to faust,
    e.g. ``hub worker -l info``); figures at http://127.0.0.1:$HUB_WORKER_WEB_PORT/dashboard."""
    from services.worker import build_worker

    settings = Settings()
    if not settings.kafka_bootstrap:
        raise _fail("kafka_not_configured", "set HUB_KAFKA_BOOTSTRAP=host:port to use Kafka")
    sys.argv = ["hub", "worker", *(ctx.args or ["-l", "info"])]  # faust reads its own argv
    build_worker(settings).main()


def _require_kafka(hub: Hub) -> None:
    if not hub.settings.kafka_bootstrap:
        raise _fail("kafka_not_configured", "set HUB_KAFKA_BOOTSTRAP=host:port to use Kafka")


def _run_until_signal(run: Any) -> None:
    """Run ``run(stop)`` in this thread; SIGTERM and SIGINT set ``stop``."""
    import signal
    import threading

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main() -> None:
    app()


if __name__ == "__main__":
    main()
