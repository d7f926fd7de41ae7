"""``hub``: the command line. Each command parses, calls a service, renders."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from typer.core import TyperGroup

from domain.errors import DomainError
from domain.values import AgencyKind
from services.api.limits import HttpLimits
from services.bootstrap import Hub, StoreUnavailable, build_hub
from services.crypto import CryptoError
from services.errors import ServiceError
from services.logging import configure_logging
from services.settings import ConfigurationError, Settings, load_settings

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
dlq_app = typer.Typer(
    help="The inbox's dead letters (HUB_KAFKA_DLQ_TOPIC): list them, send them through again.",
    no_args_is_help=True,
)
app.add_typer(agency_app, name="agency")
app.add_typer(token_app, name="token")
app.add_typer(projections_app, name="projections")
app.add_typer(participant_app, name="participant")
app.add_typer(audit_app, name="audit")
app.add_typer(dlq_app, name="dlq")
webhook_app = typer.Typer(
    help="Agencies' webhook endpoints (delivered by `hub serve` or `hub webhooks`).",
    no_args_is_help=True,
)
app.add_typer(webhook_app, name="webhook")


def _fail(code: str, message: str, exit_code: int = 1) -> typer.Exit:
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(exit_code)


def _configuration_failure(error: ConfigurationError) -> typer.Exit:
    """Exit 2, as for a usage error: the setting is wrong, not the command's input."""
    typer.echo(f"configuration error: {error}", err=True)
    return typer.Exit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as error:
        raise _configuration_failure(error) from None


@app.callback()
def _check_configuration() -> None:
    # Every command reads the same HUB_* settings: a wrong one is named, on one line,
    # before any command starts (the commands read them again, then validly).
    _settings()


@contextmanager
def _hub() -> Iterator[Hub]:
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        hub = build_hub(settings)
    except ConfigurationError as error:
        raise _configuration_failure(error) from None
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
        issued = hub.tokens.issue_for_agency(agency_id)
    typer.echo(f"registered agency {agency['agency_id']} ({agency['kind']}): {agency['name']}")
    typer.echo(f"bearer token {issued.token_id} (shown once; only its hash is stored):")
    typer.echo(issued.token)


@agency_app.command("list")
def agency_list() -> None:
    """List registered agencies."""
    with _hub() as hub:
        for agency in hub.registry.all():
            typer.echo(f"{agency['agency_id']}\t{agency['kind']}\t{agency['name']}")


class _AddByDefault(TyperGroup):
    """``hub agency token ID``, the first form, is ``hub agency token add ID``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own Context
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["add", *args]
        return super().parse_args(ctx, args)


agency_token_app = typer.Typer(
    cls=_AddByDefault,
    help="Bearer tokens of an agency (hub agency token ID: as add, agency-wide).",
    no_args_is_help=True,
)
agency_app.add_typer(agency_token_app, name="token")

UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        metavar="ID",
        help="the person the token acts for (1-64 of A-Z a-z 0-9 . _ @ -); "
        "recorded as the actor of what it sends",
    ),
]
ExpiresOption = Annotated[
    str | None,
    typer.Option(
        "--expires",
        metavar="WHEN",
        help="a duration (30m, 12h, 90d, 8w) or an ISO 8601 moment with timezone; default: never",
    ),
]


@agency_token_app.command("add")
def agency_token_add(
    agency_id: Annotated[str, typer.Argument(metavar="AGENCY")],
    user: UserOption = None,
    expires: ExpiresOption = None,
) -> None:
    """Issue a bearer token for a registered agency, for one of its users (last line)."""
    expires_at = _parse_expiry(expires)
    with _hub() as hub:
        issued = hub.tokens.issue_for_agency(agency_id, user=user, expires_at=expires_at)
    typer.echo(f"new bearer token for {agency_id}{_issued_note(issued, user)}:")
    typer.echo(issued.token)


@token_app.command("auditor")
def token_auditor(
    name: Annotated[str, typer.Option(help="the auditor's name")],
    user: UserOption = None,
    expires: ExpiresOption = None,
) -> None:
    """Print a new auditor token (last line)."""
    if not name.strip():
        raise _fail("invalid_value", "an auditor needs a name")
    expires_at = _parse_expiry(expires)
    with _hub() as hub:
        issued = hub.tokens.issue_for_auditor(name.strip(), user=user, expires_at=expires_at)
    typer.echo(f"auditor token for {name.strip()}{_issued_note(issued, user)}:")
    typer.echo(issued.token)


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every token, oldest first: id, role, agency or auditor, user, created, expires,
    last used (to the minute), revoked. Never a token or its hash."""
    with _hub() as hub:
        rows = hub.tokens.all()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    columns = [
        ("ID", "token_id"),
        ("ROLE", "role"),
        ("AGENCY/AUDITOR", "subject"),
        ("USER", "user"),
        ("CREATED", "created_at"),
        ("EXPIRES", "expires_at"),
        ("LAST USED", "last_used_at"),
        ("REVOKED", "revoked_at"),
        ("STATE", "state"),
    ]
    table = [[title for title, _ in columns]]
    table += [["-" if row[key] is None else str(row[key]) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID")]) -> None:
    """Revoke a token (its id from hub token list): every server refuses it within a
    second. Revoking it again changes nothing."""
    with _hub() as hub:
        row, newly = hub.tokens.revoke(token_id)
    holder = f"{row['role']} {row['subject']}" + (f", user {row['user']}" if row["user"] else "")
    if not newly:
        typer.echo(f"{token_id} ({holder}) was already revoked at {row['revoked_at']}")
        return
    typer.echo(f"revoked {token_id} ({holder}) at {row['revoked_at']}")


def _issued_note(issued: Any, user: str | None) -> str:
    parts = [f"id {issued.token_id}"]
    if user:
        parts.append(f"user {user}")
    parts.append(
        f"expires {issued.expires_at.isoformat(timespec='seconds')}"
        if issued.expires_at
        else "no expiry"
    )
    return f" ({', '.join(parts)}; shown once, only its hash is stored)"


EXPIRY_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _parse_expiry(text: str | None) -> datetime | None:
    """``--expires``: a duration from now (90d) or a moment with timezone."""
    if text is None:
        return None
    text = text.strip()
    amount, unit = text[:-1], text[-1:]
    if amount.isdigit() and unit in EXPIRY_UNITS and 0 < int(amount) <= 100_000:
        try:
            return datetime.now(UTC) + timedelta(**{EXPIRY_UNITS[unit]: int(amount)})
        except OverflowError:
            pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _fail(
            "invalid_value",
            "--expires is a duration (30m, 12h, 90d, 8w) or an ISO 8601 moment with timezone",
        )
    return moment


@app.command()
def record(
    source: Annotated[str, typer.Argument(help="a JSON message file, or - for stdin")],
) -> None:
    """Record one handover message (the same schema as HTTP and Kafka)."""
    from services.messages import MessageInvalid

    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise _fail("unreadable_file", f"cannot read {source}: {error.strerror}") from None
    with _hub() as hub:
        try:
            result = hub.messages.record_raw(raw)
        except MessageInvalid as error:
            raise _fail(error.code, f"{error.message}{_problems(error.details)}") from None
    typer.echo(json.dumps(result))


def _problems(details: Any) -> str:
    """A refusal's field problems on the same line: ``: path: problem; …``."""
    if not isinstance(details, list) or not details:
        return ""
    shown = [
        f"{d['path']}: {d['problem']}" if d.get("path") else str(d.get("problem"))
        for d in details
        if isinstance(d, dict)
    ]
    return f": {'; '.join(shown)}" if shown else ""


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
    from services.api.metrics import ApiMetrics
    from services.api.server import uvicorn_options

    limits = HttpLimits(max_head_bytes=max_header_bytes, read_timeout=read_timeout)
    with _hub() as hub:
        if with_demo:
            _load_demo_and_print_tokens(hub, host, port)
        hub.views.catch_up()
        metrics = ApiMetrics()  # the API's /metrics counts the in-process relay and inbox too
        background = _start_kafka_in_process(hub, metrics)
        if background is None:
            _survive_reraised_signals()
        webhooks = _start_webhooks_in_process(hub)
        typer.echo(f"serving on http://{host}:{port}  (dashboard: http://{host}:{port}/dashboard)")
        try:
            api = create_app(hub, limits=limits, metrics=metrics)
            uvicorn.run(api, host=host, port=port, **uvicorn_options(api))
        finally:
            if background is not None:
                background.stop()
            if webhooks is not None:
                webhooks[1].set()
                webhooks[0].join(timeout=10)


def _start_kafka_in_process(hub: Hub, metrics: Any) -> Any:
    """Relay and inbox as threads of ``hub serve`` (HUB_SERVE_KAFKA=false: run them apart)."""
    if not hub.settings.kafka_bootstrap or not hub.settings.serve_kafka:
        return None
    import signal

    from services.kafka import start_background

    background = start_background(hub, metrics)
    if background is not None:
        # uvicorn restores these handlers after its graceful shutdown and then
        # re-raises the signal: it should stop relay and inbox, not end the process.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: background.stop_event.set())
    return background


def _start_webhooks_in_process(hub: Hub) -> Any:
    """Webhook deliveries as a thread of ``hub serve`` (HUB_SERVE_WEBHOOKS=false: run
    ``hub webhooks`` apart)."""
    if not hub.settings.serve_webhooks:
        return None
    from services.webhooks.dispatcher import dispatcher_for

    return dispatcher_for(hub).start()


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
def demo(
    volume: Annotated[
        int,
        typer.Option(min=0, max=100_000, help="also a seeded year of N generated cases"),
    ] = 0,
) -> None:
    """Load DOMAIN.md's five scenarios (idempotent) and print where to look."""
    from services.demo import DemoFailed, load_demo
    from services.demo_volume import load_volume

    with _hub() as hub:
        store = hub.settings.effective_database_url
        typer.echo(f"loading the five scenarios into {_redact(store)}")
        try:
            reports = list(load_demo(hub.registry, hub.messages))
            if volume:
                added = load_volume(hub.messages, volume)
                typer.echo(
                    f"  {added.cases} generated cases: {added.recorded} recorded, "
                    f"{added.duplicates} already there, {added.not_yet} dated after now"
                )
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
    agency: Annotated[
        str | None,
        typer.Option(help="as this agency could see it then (disclosure rule at that moment)"),
    ] = None,
    user: Annotated[str, typer.Option(help="who is reading (recorded with the read)")] = "operator",
) -> None:
    """The case's events in order and its state rebuilt as of that moment (every
    replay is recorded as a read of the case)."""
    from services.access import AUDITOR_AGENCY, Principal, ReadService

    if axis not in ("recorded", "occurred"):
        raise _fail("invalid_value", "--axis is recorded or occurred")
    moment = _parse_moment(as_of) if as_of is not None else None
    with _hub() as hub:
        hub.views.catch_up()  # the disclosure rule reads the case's current document
        reads = ReadService(
            hub.app,
            hub.queries,
            hub.messages,
            hub.view_store,
            hub.cipher,
            policy_book=hub.settings.policy_book,
        )
        principal = (
            Principal("agency", agency, agency, user=user)
            if agency is not None
            else Principal("auditor", user, user, user=user)
        )
        if agency is not None and agency == AUDITOR_AGENCY:
            raise _fail("invalid_value", "--agency names an agency, not the auditors")
        result = reads.replay(principal, str(case_id), moment, axis)  # type: ignore[arg-type]
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
            f"  #{e['position']:<6} v{e.get('version', '-')!s:<3} {e['occurred_at']}  "
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
        try:
            output.write_text(text)
        except OSError as error:
            raise _fail("unwritable_file", f"cannot write {output}: {error.strerror}") from None
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
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="do not ask (needed when stdin is no terminal)")
    ] = False,
) -> None:
    """Erase a participant's personal data: destroys their key (crypto-shredding).
    Allowed after the case closed and its programme's retention period ended, or
    earlier with a recorded Art. 17 ground. Asks first, as it cannot be undone."""
    from datetime import UTC
    from uuid import uuid4

    from services.messages import parse_message

    _confirm_erasure(case_id, yes)
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


def _confirm_erasure(case_id: UUID, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise _fail(
            "confirmation_required",
            "no terminal to confirm at: pass --yes to erase (it destroys the participant's "
            "key and cannot be undone)",
        )
    if not typer.confirm(
        f"Destroy the key of case {case_id}? Its personal data cannot be read again",
        default=False,
    ):
        raise _fail("not_confirmed", "nothing erased")


@participant_app.command("report")
def participant_report(
    case_id: Annotated[UUID, typer.Argument(metavar="CASE_ID")],
    output_format: Annotated[
        str, typer.Option("--format", help="json (default) or html (printable, German)")
    ] = "json",
    output: Annotated[
        Path | None, typer.Option(help="write to this file (mode 0600) instead of stdout")
    ] = None,
    user: Annotated[
        str, typer.Option(help="who produces it (recorded with the read)")
    ] = "operator",
) -> None:
    """The participant's access report (Art. 15 GDPR): data held per category and
    source, every disclosure, every recorded read, consents. Produced as an auditor;
    recorded as a read of the case."""
    import os

    from services.access import Principal, ReadService
    from services.subject_report import render_html

    if output_format not in ("json", "html"):
        raise _fail("invalid_value", "--format is json or html")
    if not user.strip():
        raise _fail("invalid_value", "--user names who produces the report")
    with _hub() as hub:
        reads = ReadService(
            hub.app,
            hub.queries,
            hub.messages,
            hub.view_store,
            hub.cipher,
            policy_book=hub.settings.policy_book,
        )
        report = reads.subject_report(Principal("auditor", user, user, user=user), str(case_id))
    text = (
        render_html(report)
        if output_format == "html"
        else json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    )
    if output is None:
        typer.echo(text, nl=False)
        return
    # Personal data in clear: readable by its owner only, as var/master.key is.
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise _fail("output_unwritable", f"cannot write {output}: {error.strerror}") from None
    typer.echo(f"wrote {output}")


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


MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="serve Prometheus /metrics on this port, 0: off (default: HUB_METRICS_PORT, 0)",
    ),
]
MetricsHost = Annotated[
    str | None,
    typer.Option(
        "--metrics-host", help="address of /metrics (default: HUB_METRICS_HOST, 127.0.0.1)"
    ),
]


@app.command()
def relay(metrics_port: MetricsPort = None, metrics_host: MetricsHost = None) -> None:
    """Publish every recorded case event to Kafka (hub.events.v1) until SIGTERM/SIGINT."""
    from services.kafka.relay import Relay

    with _hub() as hub:
        _require_kafka(hub)
        metrics = _process_metrics(hub)
        runner = Relay(hub, metrics=metrics)
        with _metrics_served(hub.settings, metrics, metrics_host, metrics_port):
            _run_until_signal(runner.run)


@app.command()
def inbox(metrics_port: MetricsPort = None, metrics_host: MetricsHost = None) -> None:
    """Record agency messages from Kafka (hub.inbox.<agency>) until SIGTERM/SIGINT."""
    from services.kafka.inbox import Inbox

    with _hub() as hub:
        _require_kafka(hub)
        metrics = _process_metrics(hub)
        runner = Inbox(hub, metrics=metrics)
        with _metrics_served(hub.settings, metrics, metrics_host, metrics_port):
            _run_until_signal(runner.run)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context, metrics_port: MetricsPort = None, metrics_host: MetricsHost = None
) -> None:
    """The faust-streaming dashboard worker on hub.events.v1 (extra args go to faust,
    e.g. ``hub worker -l info``); figures at http://127.0.0.1:$HUB_WORKER_WEB_PORT/dashboard."""
    from services.worker import WorkerMetrics, build_worker

    settings = Settings()
    if not settings.kafka_bootstrap:
        raise _fail("kafka_not_configured", "set HUB_KAFKA_BOOTSTRAP=host:port to use Kafka")
    metrics = WorkerMetrics()
    sys.argv = ["hub", "worker", *(ctx.args or ["-l", "info"])]  # faust reads its own argv
    with _metrics_served(settings, metrics, metrics_host, metrics_port):
        build_worker(settings, metrics).main()


def _process_metrics(hub: Hub) -> Any:
    """The metrics of ``hub relay`` / ``hub inbox``: theirs, and the views' lag."""
    from services.metrics import HubMetrics

    metrics = HubMetrics()

    def view_lags() -> dict[str, int]:
        head = hub.app.recorder.max_notification_id() or 0
        return {view: head - position for view, position in hub.views.positions().items()}

    metrics.watch_views(view_lags)
    return metrics


@contextmanager
def _metrics_served(
    settings: Settings, metrics: Any, host: str | None, port: int | None
) -> Iterator[None]:
    from services.metrics import MetricsUnavailable, serve_metrics

    try:
        server = serve_metrics(
            metrics,
            host if host is not None else settings.metrics_host,
            port if port is not None else settings.metrics_port,
        )
    except MetricsUnavailable as error:
        raise _fail(error.code, str(error)) from None
    if server is not None:
        typer.echo(f"metrics on http://{server.host}:{server.port}/metrics", err=True)
    try:
        yield
    finally:
        if server is not None:
            server.close()


@dlq_app.command("list")
def dlq_list(
    since: Annotated[
        str | None,
        typer.Option("--since", help="only those written at or after this ISO 8601 moment"),
    ] = None,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="also print each record's details and original bytes (the agency's "
            "message: it may hold personal data)",
        ),
    ] = False,
) -> None:
    """Dead letters, oldest first: id (PARTITION:OFFSET), time, code, size in bytes,
    source record and the refusal's message. No message content unless --show."""
    from services.kafka.dlq import DeadLetterTopic

    moment = _parse_since(since) if since is not None else None
    settings = _kafka_settings()
    with _dlq_errors():
        letters = DeadLetterTopic(settings).read(since=moment)
    for letter in letters:
        moment_text = letter.time.isoformat(timespec="seconds") if letter.time else "-"
        typer.echo(
            f"{letter.id}\t{moment_text}\t{letter.code}\t{len(letter.original)}\t"
            f"{letter.source_text}\t{letter.message}"
        )
        if show:
            if letter.details:
                typer.echo(f"  details: {json.dumps(letter.details, ensure_ascii=False)}")
            typer.echo(f"  original: {letter.original.decode('utf-8', 'backslashreplace')}")
    typer.echo(f"{len(letters)} dead letters in {settings.kafka_dlq_topic}", err=True)


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[
        list[str],
        typer.Argument(metavar="ID...", help="PARTITION:OFFSET, as `hub dlq list` prints"),
    ],
) -> None:
    """Send dead letters' original bytes through the inbox path again (idempotent: what
    was recorded meanwhile is a duplicate). Exit 1 when one was refused again."""
    from services.kafka.dlq import DeadLetterTopic, replay
    from services.kafka.inbox import Inbox

    settings = _kafka_settings()
    with _dlq_errors():
        letters = DeadLetterTopic(settings).fetch(ids)
    failed = 0
    with _hub() as hub:
        for done in replay(letters, Inbox(hub)):
            outcome = done.outcome
            if outcome.kind in ("recorded", "duplicate"):
                typer.echo(f"{done.letter.id}\t{outcome.kind}\tposition {outcome.position}")
            else:
                failed += 1
                typer.echo(f"{done.letter.id}\t{outcome.kind}\t[{outcome.code}] {outcome.message}")
    if failed:
        raise typer.Exit(1)


def _parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail("invalid_value", "--since is an ISO 8601 moment") from None
    if moment.tzinfo is None:
        raise _fail("invalid_value", "--since needs a timezone, e.g. 2026-03-01T00:00:00+01:00")
    return moment


def _kafka_settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.kafka_bootstrap:
        raise _fail("kafka_not_configured", "set HUB_KAFKA_BOOTSTRAP=host:port to use Kafka")
    return settings


@contextmanager
def _dlq_errors() -> Iterator[None]:
    from kafka.errors import KafkaError

    from services.kafka.dlq import DeadLetterError

    try:
        yield
    except DeadLetterError as error:
        raise _fail(error.code, error.message) from None
    except KafkaError as error:
        raise _fail(
            "kafka_unavailable", f"cannot read the dead letters ({type(error).__name__})"
        ) from None


@app.command()
def webhooks() -> None:
    """Deliver webhooks (every agency's endpoints) until SIGTERM/SIGINT."""
    from services.webhooks.dispatcher import dispatcher_for

    with _hub() as hub:
        _run_until_signal(dispatcher_for(hub).run)


@webhook_app.command("add")
def webhook_add(
    agency_id: Annotated[str, typer.Argument(metavar="AGENCY")],
    url: Annotated[str, typer.Argument(metavar="URL", help="https://… (public address)")],
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--types", help="event types to deliver (e.g. handover.offered); all when absent"
        ),
    ] = None,
    from_start: Annotated[
        bool,
        typer.Option("--from-start", help="deliver the agency's whole feed, not only new events"),
    ] = False,
) -> None:
    """Register an endpoint; prints its secret once (last line, whsec_…)."""
    from services.webhooks.endpoints import endpoints_for

    wanted = [t for option in types or [] for t in option.split(",")]
    with _hub() as hub:
        endpoint, secret = endpoints_for(hub).add(agency_id, url, wanted, from_start=from_start)
    typer.echo(f"webhook endpoint {endpoint.endpoint_id} for {endpoint.agency}: {endpoint.url}")
    typer.echo("signing secret (shown once; Standard Webhooks):")
    typer.echo(secret)


@webhook_app.command("list")
def webhook_list(
    agency_id: Annotated[str | None, typer.Option("--agency", help="only this agency's")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """The endpoints (never their secrets)."""
    import json

    from services.webhooks.endpoints import endpoints_for

    with _hub() as hub:
        found = endpoints_for(hub).listed(agency_id)
    for endpoint in found:
        row = endpoint.public()
        if as_json:
            typer.echo(json.dumps(row))
            continue
        state = "enabled" if endpoint.enabled else f"DISABLED ({endpoint.disabled_reason})"
        kinds = ",".join(endpoint.types) or "all types"
        typer.echo(
            f"{endpoint.endpoint_id}  {endpoint.agency}  {endpoint.url}  {kinds}  {state}  "
            f"position {endpoint.position}  failures {endpoint.failures}"
        )


@webhook_app.command("remove")
def webhook_remove(endpoint_id: Annotated[str, typer.Argument(metavar="ENDPOINT_ID")]) -> None:
    """Remove an endpoint and its delivery log."""
    from services.webhooks.endpoints import endpoints_for

    with _hub() as hub:
        endpoints_for(hub).remove(endpoint_id)
    typer.echo(f"removed webhook endpoint {endpoint_id}")


@webhook_app.command("enable")
def webhook_enable(endpoint_id: Annotated[str, typer.Argument(metavar="ENDPOINT_ID")]) -> None:
    """Enable an endpoint again (after failures disabled it): retried at once."""
    from services.webhooks.endpoints import endpoints_for

    with _hub() as hub:
        endpoint = endpoints_for(hub).enable(endpoint_id)
    typer.echo(f"enabled webhook endpoint {endpoint.endpoint_id} (position {endpoint.position})")


@webhook_app.command("deliveries")
def webhook_deliveries(
    endpoint_id: Annotated[str, typer.Argument(metavar="ENDPOINT_ID")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """The endpoint's delivery log, newest first."""
    import json

    from services.webhooks.endpoints import endpoints_for

    with _hub() as hub:
        rows = endpoints_for(hub).deliveries(endpoint_id, limit=limit)
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
            continue
        outcome = "ok" if row["ok"] else f"FAILED {row['error']}"
        typer.echo(
            f"{row['at']}  event {row['event_id']}  position {row['position']}  "
            f"attempt {row['attempt']}  {row['status'] or '-'}  {outcome}  {row['ms']} ms"
        )


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
    try:
        app()
    except ConfigurationError as error:  # a setting read late, e.g. a policy file
        typer.echo(f"configuration error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
