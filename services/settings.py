"""One settings object, read once from the environment (prefix ``HUB_``)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.policy import PolicyBook

ENV_PREFIX = "HUB_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Passwords shipped in examples or guessed first: a production database must not use one.
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {"hub", "postgres", "password", "changeme", "change-me", "secret", "admin", "root", "test"}
)


class ConfigurationError(Exception):
    """A setting the hub cannot run with. The message names the variable (``HUB_…``)
    and never repeats its value, which may be a secret."""

    code = "configuration_error"


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting must not echo the others' values (the
    # Kafka password, the master key, a database URL with its password).
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    env: Literal["development", "production"] = Field(
        "development",
        description="production: refuse to start without a master key kept outside "
        "HUB_VAR_DIR, or with a default database password",
    )
    var_dir: Path = Field(Path("var"), description="Where the embedded defaults live.")
    database_url: str | None = Field(
        None,
        description="sqlite:///path.db or postgresql://user@host:port/db[?schema=name]; "
        "default: SQLite file var/hub.db",
    )
    kafka_bootstrap: str | None = Field(None, description="host:port; Kafka off when unset")
    kafka_client_id: str = Field("hub", description="prefix of the client ids sent to Kafka")
    kafka_events_topic: str = Field("hub.events.v1", description="where the relay publishes")
    kafka_dlq_topic: str = Field("hub.inbox.dlq", description="refused inbox messages")
    kafka_inbox_group: str = Field("hub-inbox", description="consumer group of the inbox")
    kafka_events_partitions: int = Field(6, ge=1, description="partitions of a new events topic")
    kafka_inbox_partitions: int = Field(3, ge=1, description="partitions of new inbox topics")
    kafka_replication_factor: int = Field(1, ge=1, description="of topics the hub creates")
    kafka_session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session")
    kafka_timeout_ms: int = Field(10_000, ge=500, description="connect/request/ack timeout")
    kafka_relay_batch_size: int = Field(1000, ge=1, le=10_000, description="events per read")
    kafka_relay_poll_interval_s: float = Field(
        0.05, gt=0, description="how often the relay looks for new events when idle"
    )
    kafka_inbox_refresh_s: float = Field(
        30.0, gt=0, description="how often the inbox re-reads the agency registry"
    )
    worker_web_port: int = Field(
        6066, ge=1, le=65535, description="loopback port of the faust worker's web view"
    )
    kafka_retry_max_s: float = Field(30.0, gt=0, description="cap of the retry backoff")
    # How the hub's Kafka clients (relay, inbox, admin, faust worker) reach the
    # brokers. PLAINTEXT only on a network nobody else shares.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, description="with SASL_*")
    kafka_sasl_password: SecretStr | None = Field(None, description="with SASL_* (a secret)")
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="with SSL / SASL_SSL: CA bundle (PEM) to verify the brokers; "
        "default: the system's",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="with SSL / SASL_SSL: client certificate (PEM), for mutual TLS"
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="with SSL / SASL_SSL: the client certificate's key (PEM)"
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="with SSL / SASL_SSL: the broker's certificate must name its host"
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="hub relay / inbox / worker serve /metrics here (0: off)"
    )
    metrics_host: str = Field(
        "127.0.0.1", description="address of that /metrics (0.0.0.0 for a scraper in the cluster)"
    )
    ready_max_view_lag: int = Field(
        1000, ge=0, description="/readyz fails while a view is more events behind than this"
    )
    ready_timeout_s: float = Field(
        2.0, gt=0, le=60, description="/readyz answers a check not done by then as failed"
    )
    serve_kafka: bool = Field(
        True, description="hub serve also runs the relay and inbox when Kafka is configured"
    )
    health_file: Path | None = Field(
        None, description="hub relay / hub inbox touch this file while running (liveness probe)"
    )
    webhooks_allow_private: bool = Field(
        False,
        description="deliver webhooks to loopback, private and link-local addresses and over "
        "plain http (development and tests only)",
    )
    serve_webhooks: bool = Field(True, description="hub serve also delivers webhooks")
    webhooks_timeout_s: float = Field(5.0, gt=0, le=60, description="per delivery attempt")
    webhooks_retry_base_s: float = Field(
        1.0, gt=0, description="first retry's wait; doubled after each failure in a row"
    )
    webhooks_retry_max_s: float = Field(300.0, gt=0, description="cap of the retry backoff")
    webhooks_max_failures: int = Field(
        10, ge=1, le=1000, description="failures in a row that disable an endpoint"
    )
    webhooks_poll_interval_s: float = Field(
        0.1, gt=0, description="how often the dispatcher looks for new events"
    )
    webhooks_workers: int = Field(4, ge=1, le=64, description="endpoints served at once")
    log_level: str = Field("INFO", description="debug, info, warning, error or critical")
    log_format: Literal["auto", "json", "console"] = "auto"
    deadline_policy_file: Path | None = Field(
        None, description="JSON file with per-programme deadline overrides"
    )
    concurrency_retries: int = Field(20, ge=0, le=1000)
    group_commit_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="concurrent writes share one transaction (one commit; on PostgreSQL "
        "one table lock); under load a group waits up to this long for company; 0: off",
    )
    snapshot_interval: int = Field(
        100,
        ge=0,
        description="snapshot a case every N events, so a write replays fewer than N; 0: off",
    )
    master_key: SecretStr | None = Field(
        None, description="base64 of 32 bytes; wraps every participant key"
    )
    master_key_file: Path | None = Field(
        None, description="file holding the master key; default var/master.key, made on first run"
    )
    audit_checkpoint_every: int = Field(
        1000, ge=1, description="store and log the audit chain's head every N events"
    )
    view_cache_mb: int = Field(
        512,
        ge=1,
        description="memory the view runner keeps case documents in (estimated), live and "
        "in a rebuild; beyond it the documents used longest ago are dropped",
    )
    capacity_file: Path | None = Field(
        None, description='JSON {"programme": {"site": places}} for the dashboard'
    )
    auth_bad_token_limit: int = Field(
        20, ge=1, description="bad bearer tokens one client address may send per window"
    )
    auth_bad_token_window_s: float = Field(
        60.0, gt=0, description="the window; past the limit the client gets 429 until it ends"
    )
    auth_bad_token_clients: int = Field(
        10_000, ge=1, description="client addresses remembered for the limit (bounded memory)"
    )

    @field_validator("database_url")
    @classmethod
    def _known_store(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme = urlparse(url).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            # Name the scheme only: the rest of the URL may hold a password.
            shown = f"{scheme}://" if scheme else "no scheme"
            raise ValueError(
                f"must be sqlite:///path.db or postgresql://user@host:port/db (got {shown})"
            )
        if scheme == "sqlite" and not urlparse(url).path.lstrip("/"):
            raise ValueError("a sqlite URL needs a file path, e.g. sqlite:///var/hub.db")
        return url

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level.upper()

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        """Half a TLS or SASL configuration would fall back to less security, or fail
        only at the first connection: refuse it at start, naming the setting."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"):
                if not getattr(self, name):
                    raise ValueError(f"HUB_{name.upper()} is required with {protocol}")
        else:
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"):
                if getattr(self, name):
                    raise ValueError(
                        f"HUB_{name.upper()} is set but HUB_KAFKA_SECURITY_PROTOCOL is {protocol}"
                    )
        if not protocol.endswith("SSL"):
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
                if getattr(self, name):
                    raise ValueError(
                        f"HUB_{name.upper()} is set but HUB_KAFKA_SECURITY_PROTOCOL is {protocol}"
                    )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("HUB_KAFKA_SSL_CERTFILE and HUB_KAFKA_SSL_KEYFILE go together")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'hub.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite:")

    @cached_property
    def capacity(self) -> dict[str, dict[str, int]]:
        if self.capacity_file is None:
            return {}
        return _read_json_file(self.capacity_file, "capacity_file")

    @cached_property
    def policy_book(self) -> PolicyBook:
        if self.deadline_policy_file is None:
            return PolicyBook()
        data = _read_json_file(self.deadline_policy_file, "deadline_policy_file")
        try:
            return PolicyBook.from_mapping(data)
        except (AttributeError, TypeError, ValueError, KeyError) as error:
            raise ConfigurationError(
                f"{env_name('deadline_policy_file')}: {self.deadline_policy_file} is not a "
                f"deadline policy ({type(error).__name__}: {_one_line(error)})"
            ) from None


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**values: Any) -> Settings:
    """The settings from the environment (``values`` override it), or a
    ``ConfigurationError`` naming every variable that is wrong, on one line."""
    try:
        return Settings(**values)
    except ValidationError as error:
        raise ConfigurationError(
            "; ".join(_describe(problem) for problem in error.errors())
        ) from None


def _describe(problem: Any) -> str:
    field = str(problem["loc"][0]) if problem["loc"] else ""
    if problem["type"] == "literal_error" and field in Settings.model_fields:
        allowed = get_args(Settings.model_fields[field].annotation)
        text = f"must be one of {', '.join(map(str, allowed))}"
    else:
        text = str(problem["msg"]).removeprefix("Value error, ")
        text = text.replace("Input should be", "must be", 1)
    return f"{env_name(field)}: {text}" if field else text


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())  # pydantic's messages span several lines


def _read_json_file(path: Path, field: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise ConfigurationError(
            f"{env_name(field)}: cannot read {path}: {error.strerror or error}"
        ) from None
    except ValueError as error:
        raise ConfigurationError(f"{env_name(field)}: {path} is not JSON ({error})") from None


def check_production(settings: Settings) -> None:
    """In production, refuse what would put data at risk silently: a master key made
    on the fly, a key stored in the data directory (a copy of the directory would then
    hold both the data and its key), or a database password everybody can guess."""
    if settings.env != "production":
        return
    problems: list[str] = []
    if settings.master_key is None:
        if settings.master_key_file is None:
            problems.append(
                f"{env_name('master_key_file')}: production needs a master key kept outside "
                f"{env_name('var_dir')}; set {env_name('master_key_file')} to a mounted secret "
                f"(or {env_name('master_key')}); none is made in production"
            )
        elif _inside(settings.master_key_file, settings.var_dir):
            problems.append(
                f"{env_name('master_key_file')}: the master key must not lie inside "
                f"{env_name('var_dir')} ({settings.var_dir}) in production: a copy of the data "
                "directory would hold the data and its key"
            )
    password = _database_password(settings.database_url)
    if password is not None and password.lower() in KNOWN_DEFAULT_PASSWORDS | {
        _database_user(settings.database_url).lower()
    }:
        problems.append(
            f"{env_name('database_url')}: the database password is a known default; "
            "set a generated one in production"
        )
    if problems:
        raise ConfigurationError("; ".join(problems))


def _inside(path: Path, directory: Path) -> bool:
    # resolve(): a relative path or a symlink into var/ is inside it all the same.
    return path.resolve().is_relative_to(directory.resolve())


def _database_password(url: str | None) -> str | None:
    if not url:
        return None
    password = urlparse(url).password
    return unquote(password) if password else None


def _database_user(url: str | None) -> str:
    return unquote(urlparse(url or "").username or "")
