"""The composition root: builds everything from settings. Nothing connects at import."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlparse

import structlog
from eventsourcing.persistence import IntegrityError, InternalError

from services.application import AgencyRegistry, HubApplication, MessageService, TokenService
from services.crypto import FieldCipher, load_master_key
from services.ports import ViewStore
from services.private_files import PRIVATE_DIR, private_sqlite_file, tighten
from services.settings import ConfigurationError, Settings, check_production, env_name
from services.store import eventsourcing_env
from services.views.queries import ViewQueries
from services.views.runner import ViewRunner
from services.views.store import PostgresViewStore, SQLiteViewStore

log = structlog.get_logger("hub.bootstrap")


class StoreUnavailable(Exception):
    code = "store_unavailable"


@dataclass
class Hub:
    settings: Settings
    app: HubApplication
    registry: AgencyRegistry
    tokens: TokenService
    messages: MessageService
    views: ViewRunner
    queries: ViewQueries
    view_store: ViewStore
    cipher: FieldCipher

    def close(self) -> None:
        self.views.stop()
        self.app.close()


def build_hub(settings: Settings | None = None) -> Hub:
    settings = settings or Settings()
    check_production(settings)
    # Read the policy and capacity files now: a bad one is refused before anything is made.
    _ = settings.policy_book, settings.capacity
    url = settings.effective_database_url
    env = eventsourcing_env(url)
    if settings.is_sqlite:
        _prepare_sqlite(Path(env["SQLITE_DBNAME"]), settings)
    else:
        prepare_postgres(url)
    app = _open_application(env, snapshot_interval=settings.snapshot_interval)
    _use_group_commit(app, settings)
    registry = AgencyRegistry(app)
    cipher = FieldCipher(
        load_master_key(
            settings.master_key.get_secret_value() if settings.master_key else None,
            settings.master_key_file,
            settings.var_dir,
            say=lambda text: log.warning("master_key_created", detail=text),
            create=settings.env != "production",
        ),
        app.store,  # type: ignore[arg-type]
    )
    view_store = cast(
        SQLiteViewStore | PostgresViewStore,
        app.factory.tracking_recorder(
            SQLiteViewStore if settings.is_sqlite else PostgresViewStore  # type: ignore[arg-type]
        ),
    )
    runner = ViewRunner(
        app.recorder,
        view_store,
        checkpoint_every=settings.audit_checkpoint_every,
        cache_bytes=settings.view_cache_mb * 2**20,
    )
    messages = MessageService(
        app,
        registry,
        settings.policy_book,
        retries=settings.concurrency_retries,
        on_recorded=runner.notify,
        cipher=cipher,
    )
    return Hub(
        settings=settings,
        app=app,
        registry=registry,
        tokens=TokenService(app.store, registry),
        messages=messages,
        views=runner,
        queries=ViewQueries(view_store, settings.capacity),
        view_store=view_store,
        cipher=cipher,
    )


def _use_group_commit(app: HubApplication, settings: Settings) -> None:
    from services.store.postgres import HubPostgresRecorder
    from services.store.sqlite import HubSQLiteRecorder

    if isinstance(app.recorder, HubPostgresRecorder | HubSQLiteRecorder):
        app.recorder.use_group_commit(settings.group_commit_ms)


def _prepare_sqlite(path: Path, settings: Settings) -> None:
    """The database file and its directory private to the hub's user (0600, 0700)."""
    if str(path) == ":memory:" or str(path).startswith("file:"):
        return
    setting = "database_url" if settings.database_url else "var_dir"
    try:
        private_sqlite_file(path)
    except OSError as error:
        raise ConfigurationError(
            f"{env_name(setting)}: cannot create {path}: {error.strerror or error}"
        ) from None
    if path.parent.resolve() == settings.var_dir.resolve():
        tighten(settings.var_dir, PRIVATE_DIR)  # the data directory is the hub's own


def _open_application(
    env: dict[str, str], *, snapshot_interval: int, attempts: int = 5
) -> HubApplication:
    for attempt in range(attempts):
        try:
            return HubApplication(env=env, snapshot_interval=snapshot_interval)
        except (InternalError, IntegrityError):
            # Processes starting together race on CREATE ... IF NOT EXISTS / OR REPLACE
            # ("tuple concurrently updated"); the loser simply tries again.
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
        except Exception as error:  # the library raises several types for "cannot connect"
            raise StoreUnavailable(
                f"cannot open the event store ({type(error).__name__}); "
                "check HUB_DATABASE_URL and that the database is running"
            ) from error
    raise AssertionError("unreachable")


def prepare_postgres(url: str) -> None:
    """Probe the server (a clear error beats a pool timeout) and create the schema."""
    schema = parse_qs(urlparse(url).query).get("schema", [None])[0]
    import psycopg
    from psycopg import sql

    conninfo = url.split("?", 1)[0].replace("postgresql://", "postgres://", 1)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            if schema:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
    except psycopg.OperationalError as error:
        raise StoreUnavailable(
            "cannot reach PostgreSQL; check HUB_DATABASE_URL and that the server is running"
        ) from error
