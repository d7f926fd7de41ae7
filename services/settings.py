"""One settings object, read once from the environment (prefix ``HUB_``)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
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
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    deadline_policy_file: Path | None = Field(
        None, description="JSON file with per-programme deadline overrides"
    )
    concurrency_retries: int = Field(20, ge=0, le=1000)
    audit_checkpoint_every: int = Field(
        1000, ge=1, description="store and log the audit chain's head every N events"
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
