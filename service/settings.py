"""Typed settings read from the environment (``SWITCHBOARD_``-free names, as operators expect)."""

from __future__ import annotations

import re
import sys
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
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
        description="PostgreSQL URL: `postgresql://user:password@host:5432/db` (`postgres://` and "
        "`postgresql+asyncpg://` work too; a unix socket is `?host=/socket/dir`).",
        examples=["postgresql://switchboard:CHANGE-ME@127.0.0.1:5432/switchboard"],
    )
    redis_url: str = Field(
        description="`redis://host:6379/0`, `rediss://` for TLS, or `unix:///path/to/redis.sock?db=0`.",
        examples=["redis://127.0.0.1:6379/0"],
    )
    secret_key: str = Field(
        min_length=32,
        description="32 or more characters; signs file URLs and encrypts the bridge and webhook secrets stored "
        "per team. Keep it secret and stable. Generate one with "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`.",
        examples=["CHANGE-ME"],
        json_schema_extra={"secret": True},
    )
    environment: Literal["development", "production", "test"] = Field(
        "production", description="`development` also serves the visitor demo page at `/demo`."
    )
    public_url: AnyHttpUrl = Field(
        AnyHttpUrl("http://127.0.0.1:8000"),
        description="Where users reach the api: the address the IdP redirects back to, and the root of the upload, "
        "download and screenshot URLs Switchboard signs, so it must be the address browsers and widgets use.",
        examples=["https://support.example.com"],
    )
    path_prefix: str = Field(
        "",
        description="The path Switchboard is served under, when it shares a site with another app (mounted in "
        "it, or behind a proxy): every URL it produces (dashboard links and assets, cookies, sign-in redirects, "
        "signed file URLs, the OpenAPI server) starts with `PUBLIC_URL` + this. Empty, or `/` and segments with "
        "no trailing slash. See docs/embedding.md.",
        examples=["/support"],
    )

    oidc_issuer: AnyHttpUrl | None = Field(
        None,
        description="Company SSO issuer URL (OpenID Connect discovery under it); unset: no operator sign-in.",
        examples=["https://login.example.com"],
    )
    oidc_client_id: str | None = Field(
        None, description="Switchboard's client id at the issuer.", examples=["switchboard"]
    )
    oidc_client_secret: str | None = Field(
        None,
        description="Switchboard's client secret at the issuer.",
        examples=["CHANGE-ME"],
        json_schema_extra={"secret": True},
    )
    oidc_audience: str | None = Field(None, description="Expected `aud` of bearer JWTs; unset: `OIDC_CLIENT_ID`.")
    oidc_scopes: str = Field(
        "openid email profile",
        description="Space-separated scopes asked for at sign-in; `groups` is added whenever `OIDC_GROUP_MAP` is set.",
    )
    oidc_groups_claim: str = Field("groups", description="The id_token claim listing the user's IdP groups.")
    oidc_group_map: dict[str, GroupGrant] = Field(
        default_factory=dict,
        description='JSON object: IdP group -> `{"team": name, "role": "lead"|"operator"}` or `{"admin": true}` '
        "(see [authentication](authentication.md)).",
    )
    oidc_post_logout_redirect_uri: str | None = Field(
        None,
        description="Sent to the IdP at logout exactly as given (no slash is added); register this exact string. "
        "Unset: `PUBLIC_URL` without a trailing slash.",
    )
    oidc_require_mapped_group: bool = Field(
        False,
        description="Refuse sign-in (403 and the failure page) to users none of whose groups `OIDC_GROUP_MAP` names.",
    )
    session_ttl_seconds: int = Field(12 * 3600, ge=60, description="Browser sessions end this long after sign-in.")
    # Native apps signing in through Switchboard's own OAuth endpoints (/oauth/*); see docs/authentication.md.
    native_client_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated client ids of the registered native apps (public clients)."
    )
    native_redirect_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated private-use URI schemes (e.g. `com.example.app`) apps may be redirected to.",
    )
    native_access_token_ttl_seconds: int = Field(900, ge=60, description="Lifetime of a native app's access token.")
    native_refresh_token_ttl_seconds: int = Field(
        30 * 86400, ge=300, description="A refresh token unused this long expires (each refresh issues a new one)."
    )
    admin_allowed_cidrs: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (`10.0.0.0/8, ::1/128`) an admin may administer from: every "
        "admin-only operation answers 403 to clients outside them (docs/authentication.md). Empty: anywhere.",
    )

    widget_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call the widget gateway from a browser (CORS, credentials "
        "allowed: the widget's beacons need them); `*` for any. Empty: no CORS headers.",
        examples=["https://www.example.com"],
    )
    operator_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins (a web or desktop app) allowed to call /api/v1 with a bearer "
        "token (CORS without credentials: the dashboard's session cookie is not lent; docs/mobile.md); `*` for any. "
        "Empty: no CORS headers on /api/v1.",
    )
    # Widget gateway budgets, each counted per window. Visitors of one office or carrier share an
    # IP, so the per-IP budgets are sized for a crowd and the per-session one carries the protection.
    widget_rate_window_seconds: int = Field(
        60, ge=1, description="The window of the widget gateway's budgets (`WIDGET_*_LIMIT_*`)."
    )
    widget_message_limit_per_session: int = Field(
        30, ge=1, description="Visitor messages one session may send per window."
    )
    widget_message_limit_per_ip: int = Field(
        1200,
        ge=1,
        description="Visitor messages all sessions of one client IP may send per window (an office or carrier "
        "shares one).",
    )
    widget_signal_limit_per_ip: int = Field(
        6000,
        ge=1,
        description="Every other widget request (connect, typing forwarded, read, polls, visibility, ...) per client "
        "IP per window.",
    )
    widget_typing_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="A session's unchanged typing state is forwarded at most this often; repeats are answered and "
        "not counted.",
    )
    widget_max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest widget request body; larger is refused with 413."
    )
    screenshot_request_ttl_seconds: int = Field(
        120,
        ge=10,
        le=3600,
        description="How long the visitor's widget has to send a screenshot an operator asked for; then the request "
        "is expired.",
    )
    screenshot_max_bytes: int = Field(
        5 * 1024 * 1024,
        ge=64 * 1024,
        le=50 * 1024 * 1024,
        description="Largest screenshot image the widget may upload; larger is refused with 413 and nothing is stored.",
    )

    redis_prefix: str = Field(
        "switchboard",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of every Redis key, channel and the job queue (`<prefix>:queue`), so deployments and "
        "test runs can share a Redis database. arq's own keys are named after job ids, which start with the queue "
        "name: a deployment's keys are `<prefix>:*` and `arq:*:<prefix>:queue:*`.",
    )
    db_pool_size: int = Field(20, ge=1, description="Database connections per process, plus as many again in overflow.")
    worker_poll_delay: float = Field(
        0.05, gt=0, description="Seconds between the worker's queue polls: how late a timer may fire."
    )
    worker_max_jobs: int = Field(50, ge=1, description="Jobs one worker runs at once.")
    timer_batch_size: int = Field(
        1000,
        ge=1,
        le=10_000,
        description="Most timers one firing transaction claims: a trigger fires its own timer and every other one due "
        "by then that no other transaction holds, with one commit for all (docs/presence-timers-ai.md).",
    )
    worker_shutdown_grace_seconds: int = Field(
        10,
        ge=0,
        le=300,
        description="On SIGTERM a worker takes no new job and waits this long for its running ones to finish before "
        "cancelling them (a cancelled job is retried by another worker). 0: cancel at once.",
    )
    events_poll_seconds: float = Field(
        2.0,
        gt=0,
        description="Operator event streams read new events when Redis says there are some, and at least this often "
        "anyway (a lost notification costs this much latency, never an event).",
    )
    events_stream_max_seconds: float = Field(
        900.0,
        gt=0,
        description="An operator event stream ends after this long; the client reconnects with `Last-Event-ID` and "
        "is authenticated again, so a revoked credential or changed membership takes effect within this time.",
    )
    event_relay_poll_seconds: float = Field(
        0.1, gt=0, description="How often the worker's relay reads the event table for webhooks and notifications."
    )
    events_settle_seconds: float = Field(
        1.0,
        ge=0,
        description="A missing event id (a transaction still running, or rolled back) is waited for at least this "
        "long, beyond every transaction that was running when the gap was seen.",
    )
    outbox_retry_base_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=AliasChoices("outbox_retry_base_seconds", "webhook_retry_base_seconds"),
        description="Outbox retries (webhooks, bridge notices, widget messages) wait base * 2^(attempts - 1) "
        "seconds, capped at 2^10 times the base.",
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one webhook delivery request.")
    webhook_max_attempts: int = Field(
        15,
        ge=1,
        description="A webhook delivery that has failed this many times is dead: never tried again (a lead may "
        "redeliver it from the delivery log).",
    )
    webhook_max_age_seconds: float = Field(
        86400.0,
        gt=0,
        description="A webhook delivery that fails when older than this is dead, whatever its attempts.",
    )
    webhook_disable_after_seconds: float = Field(
        3 * 86400.0,
        gt=0,
        description="An endpoint whose every delivery has failed for this long is disabled (with its reason, a "
        "`webhook.disabled` event and an audit row) until a lead enables it again.",
    )
    webhook_allowed_cidrs: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (`10.20.0.0/16, fd00:1::/64`) webhooks may be sent to although "
        "they are loopback, private, link-local, shared (CGNAT) or otherwise not public; every other such address "
        "is refused (docs/webhooks.md). Empty: public addresses only.",
    )
    connect_signature_tolerance_seconds: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="A connected site's request (docs/connect.md) signed longer ago than this, or this far in the "
        "future, is refused with 401: a captured request cannot be replayed later. Site callbacks are sent to the "
        "addresses `WEBHOOK_ALLOWED_CIDRS` allows, with the webhook timeout and retries.",
    )
    retention_days: int = Field(
        30,
        ge=1,
        description="Domain events, webhook delivery logs, audit rows and idempotency answers older than this many "
        "days are deleted by the worker's daily cron (events a relay has not read yet are kept).",
    )
    presence_heartbeat_timeout_seconds: int = Field(
        90, ge=5, description="A client (mobile app, dashboard tab) that is not renewed for this long is gone."
    )
    presence_offline_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="When an operator's last client closes (tab closed, signed out), they go offline this much later, "
        "unless a client comes back meanwhile (a page reload, a reconnecting stream).",
    )
    ai_provider: Literal["local", "openai", "anthropic", "gemini"] = Field(
        "local", description="Who writes AI-takeover replies; `local` is a deterministic development stand-in."
    )
    ai_api_key: str | None = Field(
        None,
        validate_default=True,
        description="The vendor's API key (required unless `AI_PROVIDER=local`).",
        json_schema_extra={"secret": True},
    )
    ai_model: str | None = Field(None, description="The vendor's model; unset: the vendor SDK's default.")
    ai_context_messages: int = Field(20, ge=1, le=200, description="Latest messages given to the AI as context.")
    ai_base_url: str | None = Field(
        None,
        description="The vendor API's base URL (a proxy, a gateway, a regional endpoint); unset: the vendor's own "
        "(`https://api.openai.com/v1`, `https://api.anthropic.com/v1`, "
        "`https://generativelanguage.googleapis.com/v1beta`).",
    )
    ai_max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Tries of one AI reply (the outbox's backoff between them); when the last fails, the "
        "conversation is handed back to the team's humans.",
    )
    ai_handback_seconds: float = Field(
        60.0,
        gt=0,
        description="An AI reply not sent this long after its takeover fired is given up (a slow try is cut off "
        "at this limit) and the conversation handed back to the team's humans.",
    )
    clock_offset_seconds: float = Field(
        0.0,
        ge=-10 * 366 * 86_400,
        le=10 * 366 * 86_400,
        description="Seconds added to the wall clock when judging business hours (is a team open, when does it "
        "open): rehearse a Monday morning at any hour. Give every process the same value; 0 in production.",
    )
    sla_at_risk_share: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="An SLA clock is at risk once this share of its target has run (business time), for policies "
        "that set no share of their own.",
    )
    metrics_dir: str | None = Field(
        None,
        description="Where this host's api and worker processes write their Prometheus metrics, for any api's "
        "`/metrics` to add up (one directory per host, shared by its processes). Unset: `<DATA_DIR>/metrics`.",
    )
    metrics_allowed_cidrs: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=lambda: [
            ip_network(n) for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
        ],
        description="Comma-separated networks allowed to scrape `/metrics`; others get 403. Default: loopback and "
        "the private ranges, where a Prometheus server usually runs.",
    )
    otel_exporter_otlp_endpoint: AnyHttpUrl | None = Field(
        None,
        description="Base URL of an OTLP/HTTP collector (traces go to `<URL>/v1/traces`, protobuf). Set: the api "
        "traces each request and the workers each job, with their SQL statements. Unset: no tracing.",
        examples=["http://127.0.0.1:4318"],
    )
    otel_service_name: str = Field(
        "switchboard", min_length=1, description="`service.name` of the traces this deployment sends."
    )
    data_dir: str = Field(
        ".data",
        description="Local data folder (the one `switchboard dev` keeps its databases in); attachments are kept in "
        "`<DATA_DIR>/files` unless `FILE_STORE=s3`.",
    )
    file_store: Literal["local", "s3"] = Field(
        "local",
        description="Where attachment bytes live: `local` (`DATA_DIR`) or `s3` (any S3-compatible store: AWS S3, "
        "MinIO, R2, ...; the `S3_*` settings).",
    )
    s3_bucket: str | None = Field(None, validate_default=True, description="The bucket; required with `FILE_STORE=s3`.")
    s3_endpoint_url: str | None = Field(
        None, description="The store's URL for S3-compatible stores (`https://minio.example:9000`); unset: AWS."
    )
    s3_region: str | None = Field(None, description="The bucket's region.")
    s3_access_key_id: str | None = Field(
        None, description="Access key id; unset: boto3's usual chain (instance role, `~/.aws`, ...)."
    )
    s3_secret_access_key: str | None = Field(
        None,
        description="Secret access key; unset: boto3's usual chain (instance role, `~/.aws`, ...).",
        json_schema_extra={"secret": True},
    )
    s3_prefix: str = Field(
        "attachments/", description="Prefix of every object key Switchboard writes (`<prefix><attachment id>`)."
    )
    attachment_url_ttl_seconds: int = Field(
        3600,
        ge=10,
        le=7 * 86400,
        description="Life of a download URL. Every read of a message gives fresh ones: Switchboard's own HMAC-signed "
        "`/files/{id}?expires=&signature=` (`SECRET_KEY`), or the store's presigned URL with `FILE_STORE=s3`.",
    )
    attachment_upload_ttl_seconds: int = Field(
        900,
        ge=10,
        le=86400,
        description="An upload URL's life, and how long a file may wait, uploaded but not sent, before the worker's "
        "sweep deletes it (row and bytes).",
    )
    # Chat platform APIs; tests point them at loopback stand-ins (tests/standins).
    telegram_api_base: str = Field(
        "https://api.telegram.org", description="Telegram Bot API root (`/bot<token>/<method>`); a proxy or stand-in."
    )
    slack_api_base: str = Field("https://slack.com/api", description="Slack Web API root (`/<method>`).")
    discord_api_base: str = Field("https://discord.com/api/v10", description="Discord REST API (v10) root.")
    # Push notifications (docs/mobile.md, "Push"); a platform without its credentials is not pushed to.
    apns_key: str | None = Field(
        None,
        description="APNs token-auth signing key: the `.p8` file's PEM text, or the path to the file.",
        json_schema_extra={"secret": True},
    )
    apns_key_id: str | None = Field(None, description="The APNs key's id (10 characters, the JWT `kid`).")
    apns_team_id: str | None = Field(None, description="The Apple developer team id (the JWT `iss`).")
    apns_topic: str | None = Field(
        None, description="The iOS app's bundle id, used as `apns-topic` for devices registered without an app id."
    )
    apns_base_url: str = Field(
        "https://api.push.apple.com",
        description="APNs HTTP/2 server (`https://api.sandbox.push.apple.com` for development builds; a stand-in).",
    )
    apns_ca_file: str | None = Field(
        None, description="Extra CA certificates (PEM file) trusted for `APNS_BASE_URL`, e.g. a TLS proxy's."
    )
    fcm_service_account: str | None = Field(
        None,
        description="Firebase service account: its JSON key text or the path to that file.",
        json_schema_extra={"secret": True},
    )
    fcm_base_url: str = Field(
        "https://fcm.googleapis.com", description="FCM HTTP v1 root (`/v1/projects/<id>/messages:send`); a stand-in."
    )
    vapid_private_key: str | None = Field(
        None,
        description="Web Push VAPID key (P-256): PEM text, a path to a PEM file, or the raw key in base64url. "
        "Its public key is what browsers subscribe with.",
        json_schema_extra={"secret": True},
    )
    vapid_subject: str = Field(
        "mailto:admin@localhost", description="VAPID `sub` claim: a `mailto:` or `https:` contact for push services."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level logged.")
    log_json: bool = Field(True, description="One JSON object per log line on stderr; `false` for console lines.")

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

    @field_validator("path_prefix")
    @classmethod
    def _path_only(cls, value: str) -> str:
        if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("must be empty or a path such as /support (no trailing slash, no query)")
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
        "metrics_allowed_cidrs",
        "webhook_allowed_cidrs",
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
    def base_url(self) -> str:
        """Where Switchboard's own paths start: ``PUBLIC_URL`` plus ``PATH_PREFIX``, no trailing slash."""
        return str(self.public_url).rstrip("/") + self.path_prefix

    def site_path(self, path: str) -> str:
        """One of Switchboard's paths (``/app``, ``/auth``…) as browsers must ask for it: under ``PATH_PREFIX``."""
        return self.path_prefix + path

    @property
    def post_logout_redirect_uri(self) -> str:
        """The post-logout URI sent to the IdP, byte for byte as documented for registration."""
        return self.oidc_post_logout_redirect_uri or self.base_url

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
