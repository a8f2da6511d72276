"""Typed settings read from the environment (``SWITCHBOARD_``-free names, as operators expect)."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(SystemExit):
    """Start-up stops with one line naming the offending variable."""


class Settings(BaseSettings):
    """Everything the api and the workers need; built once per process and passed in."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    database_url: str = Field(
        description="PostgreSQL URL, e.g. postgresql+asyncpg://user@host:5432/db",
    )
    redis_url: str = Field(description="Redis URL, e.g. redis://127.0.0.1:6379/0")
    secret_key: str = Field(min_length=32, description="Signs sessions and tokens; 32+ characters.")
    environment: Literal["development", "production", "test"] = "production"
    public_url: AnyHttpUrl = Field(AnyHttpUrl("http://127.0.0.1:8000"), description="Where users reach the api.")

    oidc_issuer: AnyHttpUrl | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None

    widget_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed to embed the widget; '*' for any."
    )
    # Per client IP on the widget gateway: requests per window.
    widget_rate_limit: int = Field(120, ge=1)
    widget_rate_window_seconds: int = Field(60, ge=1)
    widget_max_body_bytes: int = Field(64 * 1024, ge=1024)

    # Keys in Redis (pub/sub channels, rate limits, arq queue) start with this, so several
    # deployments or test runs can share one Redis without seeing each other.
    redis_prefix: str = Field("switchboard", pattern=r"^[A-Za-z0-9_.:-]+$")
    db_pool_size: int = Field(20, ge=1)
    worker_poll_delay: float = Field(0.05, gt=0)
    worker_max_jobs: int = Field(50, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("widget_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def async_database_url(self) -> str:
        """The database URL with the asyncpg driver SQLAlchemy needs."""
        scheme, rest = self.database_url.split("://", 1)
        return f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else self.database_url

    @property
    def queue_name(self) -> str:
        """The arq queue this deployment's api enqueues to and its workers read."""
        return f"{self.redis_prefix}:queue"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; exit with one clear line on a missing or bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else "?"
        message = (
            "is required but not set" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
        )
        print(f"switchboard: configuration error: {variable} {message}", file=sys.stderr)
        raise SettingsError(2) from None
