"""One settings object, read once from the environment (prefix ``HUB_``)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.policy import PolicyBook


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore", frozen=True)

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
    serve_kafka: bool = Field(
        True, description="hub serve also runs the relay and inbox when Kafka is configured"
    )
    health_file: Path | None = Field(
        None, description="hub relay / hub inbox touch this file while running (liveness probe)"
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    deadline_policy_file: Path | None = Field(
        None, description="JSON file with per-programme deadline overrides"
    )
    concurrency_retries: int = Field(20, ge=0, le=1000)
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
        return json.loads(self.capacity_file.read_text())

    @cached_property
    def policy_book(self) -> PolicyBook:
        if self.deadline_policy_file is None:
            return PolicyBook()
        return PolicyBook.from_mapping(json.loads(self.deadline_policy_file.read_text()))
