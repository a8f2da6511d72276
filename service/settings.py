"""Typed settings read from the environment (``SWITCHBOARD_``-free names, as operators expect)."""

from __future__ import annotations

import sys
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(SystemExit):
    """Start-up stops with one line naming the offending variable."""


class GroupGrant(BaseModel):
    """What membership of one IdP group grants: a role in a team (by name), or administration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str | None = None
    role: Literal["lead", "operator"] = "operator"
    admin: bool = False

    @model_validator(mode="after")
    def _team_or_admin(self) -> GroupGrant:
        if (self.team is None) != self.admin:
            raise ValueError('each group grants either {"team": ..., "role": ...} or {"admin": true}')
        return self


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
    oidc_audience: str | None = Field(None, description="Expected 'aud' of bearer JWTs; defaults to the client id.")
    oidc_scopes: str = "openid email profile"
    oidc_groups_claim: str = Field("groups", description="The id_token claim listing the user's IdP groups.")
    # IdP group -> {"team": name, "role": "lead"|"operator"} or {"admin": true}; see docs/authentication.md.
    oidc_group_map: dict[str, GroupGrant] = Field(default_factory=dict)
    # Where the IdP sends the browser after logout: exactly as registered there (no slash is added).
    oidc_post_logout_redirect_uri: str | None = Field(
        None, description="Registered post-logout redirect URI; defaults to PUBLIC_URL without a trailing slash."
    )
    # Refuse sign-in (403 and the failure page) to users none of whose groups the group map names.
    oidc_require_mapped_group: bool = False
    session_ttl_seconds: int = Field(12 * 3600, ge=60, description="Browser sessions end this long after sign-in.")
    # Native apps signing in through Switchboard's own OAuth endpoints (/oauth/*); see docs/authentication.md.
    native_client_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated client ids of the registered native apps (public clients)."
    )
    native_redirect_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Private-use URI schemes (e.g. com.example.app) apps may be redirected to."
    )
    native_access_token_ttl_seconds: int = Field(900, ge=60, description="Lifetime of a native app's access token.")
    native_refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=300, description="A refresh token unused this long expires (each refresh issues a new one)."
    )
    # Routes marked admin answer 403 to clients outside these networks; empty means anywhere.
    admin_allowed_cidrs: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)

    widget_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed to embed the widget; '*' for any."
    )
    operator_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed to call /api/v1 with a bearer token; empty for none.",
    )
    # Widget gateway budgets, each counted per window. Visitors of one office or carrier share an
    # IP, so the per-IP budgets are sized for a crowd and the per-session one carries the protection.
    widget_rate_window_seconds: int = Field(60, ge=1)
    widget_message_limit_per_session: int = Field(30, ge=1, description="Messages one session may send per window.")
    widget_message_limit_per_ip: int = Field(1200, ge=1, description="Messages all sessions of one IP may send.")
    widget_signal_limit_per_ip: int = Field(
        6000, ge=1, description="Every other widget request (typing, read, polls, connect, ...) per IP."
    )
    # Typing repeated within this interval is answered but not forwarded (the widget sends one per keystroke).
    widget_typing_interval_seconds: float = Field(2.0, gt=0)
    widget_max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Screenshots an operator asks the widget for: how long the widget has to answer, and the largest image taken.
    screenshot_request_ttl_seconds: int = Field(120, ge=10, le=3600)
    screenshot_max_bytes: int = Field(5 * 1024 * 1024, ge=64 * 1024, le=50 * 1024 * 1024)

    # Keys in Redis (pub/sub channels, rate limits, arq queue) start with this, so several
    # deployments or test runs can share one Redis without seeing each other.
    redis_prefix: str = Field("switchboard", pattern=r"^[A-Za-z0-9_.:-]+$")
    db_pool_size: int = Field(20, ge=1)
    worker_poll_delay: float = Field(0.05, gt=0)
    worker_max_jobs: int = Field(50, ge=1)
    # Operator event stream: api instances read new events when Redis says there are some, and
    # at least this often anyway (a lost notification costs this much latency, never an event).
    events_poll_seconds: float = Field(2.0, gt=0)
    # A stream ends after this long; the client reconnects with Last-Event-ID and is authenticated
    # again, so a revoked credential or a changed team membership takes effect within this time.
    events_stream_max_seconds: float = Field(900.0, gt=0)
    # How often the worker's relay reads the event table for webhooks and notifications.
    event_relay_poll_seconds: float = Field(0.1, gt=0)
    # A missing event id (a transaction still running, or rolled back) is waited for this long at
    # least, beyond every transaction that was running when the gap was seen.
    events_settle_seconds: float = Field(1.0, ge=0)
    # Outbox retries (webhooks, bridge notices, widget messages) wait base * 2**(attempts - 1) seconds,
    # capped at 2**10 times the base. The variable's earlier name, from when only webhooks retried, still works.
    outbox_retry_base_seconds: float = Field(
        5.0, gt=0, validation_alias=AliasChoices("outbox_retry_base_seconds", "webhook_retry_base_seconds")
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    # A client (mobile app, dashboard tab) that is not renewed for this long is gone.
    presence_heartbeat_timeout_seconds: int = Field(90, ge=5)
    # When an operator's last client closes (tab closed, signed out), they go offline this much later,
    # unless a client comes back meanwhile (a page reload, a reconnecting stream).
    presence_offline_grace_seconds: float = Field(30.0, ge=0)
    ai_provider: Literal["local", "openai", "anthropic", "gemini"] = Field(
        "local", description="Who writes AI-takeover replies; 'local' is a deterministic development stand-in."
    )
    ai_api_key: str | None = Field(
        None, validate_default=True, description="The vendor's API key (required unless AI_PROVIDER=local)."
    )
    ai_model: str | None = Field(None, description="The vendor's model; PocketPing's default when unset.")
    ai_context_messages: int = Field(20, ge=1, le=200, description="Latest messages given to the AI as context.")
    # Attachments: where their bytes live, and how long a signed upload or download URL stays valid.
    data_dir: str = Field(".data", description="Local data folder (switchboard dev's); files in <data_dir>/files.")
    file_store: Literal["local", "s3"] = Field("local", description="'s3': any S3-compatible store (S3_* settings).")
    s3_bucket: str | None = Field(None, validate_default=True, description="Bucket (required with FILE_STORE=s3).")
    s3_endpoint_url: str | None = Field(None, description="For S3-compatible stores (MinIO, R2, ...); unset: AWS.")
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_prefix: str = Field("attachments/", description="Key prefix of every object Switchboard writes.")
    attachment_url_ttl_seconds: int = Field(3600, ge=10, le=7 * 86400, description="Life of a download URL.")
    attachment_upload_ttl_seconds: int = Field(
        900, ge=10, le=86400, description="An upload not completed within this is refused and swept away."
    )
    # Chat platform APIs; tests point them at loopback stand-ins (tests/standins).
    telegram_api_base: str = Field("https://api.telegram.org", description="Bot API root; /bot<token>/<method>")
    slack_api_base: str = Field("https://slack.com/api", description="Web API root; /<method>")
    discord_api_base: str = Field("https://discord.com/api/v10", description="REST API v10 root")
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

    @field_validator("ai_api_key")
    @classmethod
    def _vendor_needs_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("ai_provider", "local")
        if provider != "local" and not value:
            raise ValueError(f"is required when AI_PROVIDER={provider}")
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _s3_needs_bucket(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("file_store") == "s3" and not value:
            raise ValueError("is required when FILE_STORE=s3")
        return value

    @field_validator(
        "widget_origins",
        "operator_cors_origins",
        "admin_allowed_cidrs",
        "native_client_ids",
        "native_redirect_schemes",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def async_database_url(self) -> str:
        """The database URL with the asyncpg driver SQLAlchemy needs."""
        scheme, rest = self.database_url.split("://", 1)
        return f"postgresql+asyncpg://{rest}" if scheme != "postgresql+asyncpg" else self.database_url

    @property
    def oidc_issuer_url(self) -> str | None:
        """The issuer exactly as tokens carry it (pydantic adds a trailing slash to bare hosts)."""
        return str(self.oidc_issuer).rstrip("/") if self.oidc_issuer else None

    @property
    def post_logout_redirect_uri(self) -> str:
        """The post-logout URI sent to the IdP, byte for byte as documented for registration."""
        return self.oidc_post_logout_redirect_uri or str(self.public_url).rstrip("/")

    @property
    def oidc_scope_list(self) -> str:
        """``OIDC_SCOPES``, plus ``groups`` whenever the group map needs the groups claim."""
        scopes = self.oidc_scopes.split()
        if self.oidc_group_map and "groups" not in scopes:
            scopes.append("groups")
        return " ".join(scopes)

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
