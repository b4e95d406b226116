"""The configuration file's shape (SPEC §4), validated once at start-up and passed down.

Every model forbids unknown keys so that a typo in a deployment's YAML is an error that names
the key, not a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from functools import cached_property
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Names of sources and vendor instances: they appear in URLs, Redis keys and metrics."""
LinkMode = Literal["set", "create", "none"]
"""What a source's `user.external_ids` may do to identity links (`sources[].link_mode`)."""
ADMIN_SETTER = "admin"
"""Who set an identity link through the admin API (a link set by an event shows its source's
name, so no source may take this one)."""


SKIP_CROSS_CHECKS = "skip_cross_checks"
"""Validation context key: validate each section but not the checks across them (the loader
asks for it to check further what of a faulty file is valid)."""


class SettingsProblems(ValueError):
    """Every cross-section problem of a config, each `key.path: message` (the loader reads
    them back one by one to place each in the file)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSentinelSettings(_Strict):
    """A primary managed by Redis Sentinel: every Redis client of usersync asks the Sentinels
    for the primary and follows it through a failover (docs/high-availability.md)."""

    addresses: list[Annotated[str, Field(pattern=r"^[^\s:]+:[0-9]{1,5}$")]] = Field(
        min_length=1, description="the Sentinels, each `host:port`"
    )
    master: str = Field(min_length=1, description="the Sentinel master name of the primary")
    password: SecretStr | None = Field(
        default=None, description="the data nodes' password (primary and replicas)"
    )
    username: str | None = Field(default=None, description="the data nodes' ACL user")
    sentinel_password: SecretStr | None = Field(
        default=None, description="the Sentinels' own password, if they require one"
    )
    db: int = Field(default=0, ge=0, le=15, description="the database number")
    ssl: bool = Field(default=False, description="TLS to the data nodes and the Sentinels")

    def sentinel_hosts(self) -> list[tuple[str, int]]:
        """`addresses` as (host, port) pairs, as redis-py and arq take them."""
        return [(host, int(port)) for host, port in (a.rsplit(":", 1) for a in self.addresses)]


class RedisSettings(_Strict):
    url: str | None = Field(
        default=None,
        description="redis:// or rediss:// URL; left out (and no `sentinel`), `usersync run` "
        "starts an embedded Redis",
    )
    sentinel: RedisSentinelSettings | None = Field(
        default=None,
        description="a Sentinel-managed primary instead of `url` (never both): the gateway, "
        "the workers and arq's pool follow it through a failover without a restart",
    )
    min_replicas_ack: int = Field(
        default=0,
        ge=0,
        le=16,
        description="a 202 only once the event's write reached this many replicas (Redis "
        "WAIT); fewer within `replica_ack_timeout_ms`: 503 `replication_timeout` (the event "
        "may be stored: a retry with the same event_id answers 200 duplicate)",
    )
    replica_ack_timeout_ms: int = Field(
        default=1000,
        ge=1,
        le=60_000,
        description="how long a write waits for `min_replicas_ack` replicas",
    )
    embedded_dir: str = Field(
        default=".usersync/redis", description="working directory of the embedded Redis"
    )
    embedded_port: int = Field(default=6399, ge=0, le=65535, description="0 picks a free port")
    max_memory_fraction: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="the gateway refuses new events (503 storage_full) once Redis's used memory "
        "reaches this fraction of its maxmemory, leaving the rest to the workers draining it; "
        "0, or a Redis without maxmemory: no check",
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _url_or_sentinel(self) -> RedisSettings:
        if self.url is not None and self.sentinel is not None:
            raise ValueError(
                "give url (one Redis) or sentinel (a Sentinel-managed primary), not both"
            )
        return self


MIN_SECRET_LENGTH = 16
"""Shortest bearer token or HMAC secret accepted in clear."""

SHA256_HEX_PATTERN = r"^[0-9a-fA-F]{64}$"


def token_digest(token: str) -> bytes:
    """SHA-256 of a bearer token: what `token_sha256` holds (as hex) and what is compared."""
    return hashlib.sha256(token.encode()).digest()


def _long_enough(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    return value


LongSecret = Annotated[SecretStr, AfterValidator(_long_enough)]
"""A bearer token or HMAC secret given in clear: at least 16 characters."""


def _one_token(
    where: str, clear: SecretStr | None, hashed: str | None, *, required: bool
) -> bytes | None:
    """The SHA-256 digest of a credential given as `<name>` or `<name>_sha256`, at most one."""
    if clear is not None and hashed is not None:
        raise ValueError(f"give {where} or {where}_sha256, not both")
    if clear is not None:
        return token_digest(clear.get_secret_value())
    if hashed is not None:
        return bytes.fromhex(hashed)
    if required:
        raise ValueError(f"one of {where} or {where}_sha256 is required")
    return None


class GatewaySettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    admin_token: LongSecret | None = Field(
        default=None, description="bearer token of the admin calls (at least 16 characters)"
    )
    admin_token_sha256: str | None = Field(
        default=None,
        pattern=SHA256_HEX_PATTERN,
        description="instead of admin_token: the hex SHA-256 of the admin token",
    )
    batch_max_events: int = Field(default=100, ge=1, le=10_000)
    signature_skew_s: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="a signed request's timestamp may be this far from the gateway's clock",
    )
    max_future_skew_s: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="an event's occurred_at may be at most this far ahead of the gateway's "
        "clock (else 422): a far-future time would make every later change of its fields stale",
    )
    require_signatures: bool = Field(
        default=False,
        description="every source must sign its requests (each needs an hmac_secret)",
    )
    max_inflight_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        le=4 * 1024 * 1024 * 1024,
        description="request body bytes this process reads at once, all connections together; "
        "a body that would pass it is refused with 503 `overloaded` and Retry-After",
    )
    header_timeout_s: float = Field(
        default=10,
        gt=0,
        le=300,
        description="a connection must send a request's headers within this; else it is closed",
    )
    body_timeout_s: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="a request's whole body must arrive within this of its headers; else 408",
    )
    keepalive_timeout_s: float = Field(
        default=15,
        gt=0,
        le=3600,
        description="an idle keep-alive connection is closed after this",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="open connections per process; past it the oldest idle one is closed, "
        "or the new one answered 503 `overloaded` and closed when none is idle",
    )
    drain_delay_s: float = Field(
        default=0,
        ge=0,
        le=300,
        description="on SIGTERM the gateway answers /readyz 503 `shutting_down` and keeps "
        "serving this long before it stops accepting connections, so a load balancer polling "
        "/readyz takes it out first (counted in shutdown_grace_s)",
    )

    @model_validator(mode="after")
    def _admin_token_once(self) -> GatewaySettings:
        _one_token("admin_token", self.admin_token, self.admin_token_sha256, required=False)
        return self

    @property
    def admin_digest(self) -> bytes | None:
        """SHA-256 of the admin token, or None when the config has no admin token."""
        return _one_token("admin_token", self.admin_token, self.admin_token_sha256, required=False)


class SourceRateLimit(_Strict):
    per_second: float = Field(gt=0, le=100_000, description="event posts per second, sustained")
    burst: int = Field(ge=1, le=100_000, description="posts allowed at once after a quiet spell")


DEFAULT_SOURCE_RATE = SourceRateLimit(per_second=1000, burst=2000)
"""A source's rate limit when its config gives none: far above what an HR system or an IdP
posts, low enough that one source's credentials cannot fill Redis in seconds."""


class SourceSettings(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    token: LongSecret | None = Field(
        default=None, description="bearer token, at least 16 characters"
    )
    token_sha256: str | None = Field(
        default=None,
        pattern=SHA256_HEX_PATTERN,
        description="instead of token: the hex SHA-256 of the bearer token",
    )
    hmac_secret: LongSecret | None = Field(
        default=None, description="key of the request signatures, at least 16 characters"
    )
    require_signature: bool = Field(
        default=False, description="refuse this source's requests that are not signed"
    )
    rate_limit: SourceRateLimit | None = Field(
        default=DEFAULT_SOURCE_RATE,
        description="event posts allowed, all gateway processes together; left out: 1000/s, "
        "burst 2000; null: no limit",
    )
    allowed_targets: list[str] | None = Field(
        default=None, description="vendor instances this source may target; left out: all"
    )
    link_mode: LinkMode = Field(
        default="set",
        description="what the source's user.external_ids may do to identity links: set "
        "(create and change), create (create a missing link, never change one: a different id "
        "is a 409 link_conflict), none (external ids refused, 422 links_not_allowed)",
    )
    cloudevents_type_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$",
        description="what this source's CloudEvent types start with, stripped before the "
        "event type is read (e.g. `com.example.` takes `com.example.user.updated`); a type "
        "without it is refused; left out: types are the bare `user.updated`, ...",
    )
    scim: bool = Field(
        default=False,
        description="this source's identity provider may provision users through the SCIM 2.0 "
        "service provider at /scim/v2, authenticated by the source's bearer token",
    )

    @model_validator(mode="after")
    def _credentials(self) -> SourceSettings:
        _one_token("token", self.token, self.token_sha256, required=True)
        if self.require_signature and self.hmac_secret is None:
            raise ValueError("require_signature needs an hmac_secret")
        if self.scim and self.require_signature:
            raise ValueError(
                "scim: identity providers authenticate with the bearer token only, so a SCIM "
                "source cannot require_signature"
            )
        return self

    @property
    def token_digest(self) -> bytes:
        """SHA-256 of the source's bearer token, however the config gives it."""
        digest = _one_token("token", self.token, self.token_sha256, required=True)
        assert digest is not None
        return digest


class WorkerSettings(_Strict):
    concurrency: int = Field(default=50, ge=1, le=1000)
    poll_delay_s: float = Field(
        default=0.05, gt=0, le=5, description="queue poll interval: the pickup latency bound"
    )
    job_timeout_s: int = Field(
        default=30,
        ge=3,
        description="a job run (at most one vendor call) running longer is cancelled and run "
        "again; a killed worker's pairs are taken over once its heartbeat lapses (5 s)",
    )
    max_batch: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="most pending changes of one (vendor, user) coalesced into one call",
    )
    reconcile_interval_s: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="a pair with work waiting and no job scheduled (whatever the cause) is "
        "found and given one within this long: one worker at a time checks every such pair",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address the worker process serves /metrics, /healthz and /readyz on",
    )
    metrics_port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="port of the worker's /metrics, /healthz and /readyz; 0: not served "
        "(one port per worker process: give each process on a host its own)",
    )


class RetrySettings(_Strict):
    max_attempts: int = Field(default=8, ge=1, le=100)
    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    max_age_s: int = Field(default=86400, ge=1)


class RateLimitSettings(_Strict):
    per_second: float = Field(default=10.0, gt=0, description="calls per second, all workers")
    burst: int = Field(default=20, ge=1, description="calls allowed at once after a quiet spell")
    recovery_s: float = Field(
        default=30.0,
        gt=0,
        description="after a 429 halves the rate, time to climb back to per_second",
    )


class CircuitBreakerSettings(_Strict):
    failure_threshold: int = Field(
        default=5, ge=1, description="consecutive failed calls that open the circuit"
    )
    cooldown_s: float = Field(
        default=10.0, gt=0, description="how long an open circuit holds calls off before a probe"
    )
    max_cooldown_s: float = Field(
        default=300.0, gt=0, description="the cool-down doubles after each failed probe, to this"
    )


class VendorAuth(_Strict):
    token: SecretStr

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value


class VendorSettings(_Strict):
    kind: str = Field(
        description="adapter kind, one of the registered vendor kinds "
        "(`usersync kinds` or docs/adding-a-vendor.md)"
    )
    enabled: bool = True
    base_url: AnyHttpUrl
    auth: VendorAuth
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    rate_limit: RateLimitSettings = RateLimitSettings()
    retry: RetrySettings = RetrySettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="calls to this instance at once per worker process; left out: half of "
        "worker.concurrency, so a slow vendor cannot take every worker slot",
    )
    roles: dict[str, str] = Field(
        default_factory=dict, description="canonical role name -> the vendor's role value"
    )
    id_field: str = Field(
        default="_id",
        min_length=1,
        description="MileApp only: body key that carries the user id (its path has none)",
    )

    @property
    def base(self) -> str:
        """The base URL without a trailing slash, ready to have a path appended."""
        return str(self.base_url).rstrip("/")


class SandboxSettings(_Strict):
    enabled: bool = Field(default=False, description="`usersync run` also starts the simulators")
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)


class RetentionSettings(_Strict):
    events_s: int = Field(
        default=7 * 86400,
        ge=5,
        description="how long an event's status and its event_id dedupe record are kept "
        "once every target is delivered, skipped or dead (an event still owed to a target "
        "is kept however long that takes); also how long dead letters are listed",
    )


def _fernet_key(value: SecretStr) -> SecretStr:
    """A Fernet key: 32 bytes in url-safe base64 (the value is never put in the message)."""
    try:
        Fernet(value.get_secret_value())
    except ValueError:  # binascii.Error is a ValueError too
        raise ValueError(
            "must be a Fernet key (32 bytes, url-safe base64); generate one with: python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None
    return value


FernetKey = Annotated[SecretStr, AfterValidator(_fernet_key)]


class SecretsSettings(_Strict):
    """Keys that encrypt secret fields (passwords) before they are written to Redis."""

    keys: list[FernetKey] = Field(
        default_factory=list,
        description="Fernet keys: the first encrypts, every one decrypts (rotation); none: "
        "events carrying a password are refused",
    )


LogFormat = Literal["auto", "json", "console"]
"""`logging.format`: `auto` is `console` when stdout is a terminal, else `json`."""


class LoggingSettings(_Strict):
    level: str = Field(
        default="info",
        pattern=r"^(debug|info|warning|error)$",
        description="lowest level written; SIGHUP applies a new one",
    )
    format: LogFormat = Field(
        default="auto",
        description="json: one JSON object a line (for machines); console: aligned, coloured "
        "text (for people); auto: console when stdout is a terminal, else json",
    )


class Settings(_Strict):
    redis: RedisSettings = RedisSettings()
    gateway: GatewaySettings = GatewaySettings()
    sources: list[SourceSettings] = Field(default_factory=list)
    worker: WorkerSettings = WorkerSettings()
    vendors: dict[Annotated[str, Field(pattern=NAME_PATTERN)], VendorSettings] = Field(
        default_factory=dict
    )
    sandbox: SandboxSettings = SandboxSettings()
    retention: RetentionSettings = RetentionSettings()
    secrets: SecretsSettings = SecretsSettings()
    logging: LoggingSettings = LoggingSettings()
    shutdown_grace_s: float = Field(
        default=10,
        ge=0,
        le=3600,
        description="on SIGTERM or SIGINT, what is in flight (gateway requests, deliveries) "
        "gets this long to finish; deliveries still running are then cut off and their "
        "pairs handed back to the queue",
    )

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Settings:
        """Checks across sections, every problem at once (`SettingsProblems`), so a file is
        fixed in one go rather than one message at a time."""
        if info.context and info.context.get(SKIP_CROSS_CHECKS):
            return self
        problems = list(self._structure_problems())
        try:
            self._credential_checks()
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise SettingsProblems(problems)
        return self

    def _structure_problems(self) -> Iterator[str]:
        names = [source.name for source in self.sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            yield f"sources: duplicate names {duplicates}"
        if ADMIN_SETTER in names:
            yield f"sources: the name {ADMIN_SETTER!r} is reserved (links set by the admin show it)"
        for source in self.sources:
            unknown = sorted(set(source.allowed_targets or ()) - set(self.vendors))
            if unknown:
                yield f"sources.{source.name}.allowed_targets: unknown vendor instances {unknown}"
        for name, vendor in self.vendors.items():
            if vendor.timeout_s >= self.worker.job_timeout_s:
                yield (
                    f"vendors.{name}.timeout_s: {vendor.timeout_s} must be below "
                    f"worker.job_timeout_s ({self.worker.job_timeout_s}), or arq cancels the call"
                )

    def _credential_checks(self) -> None:
        """Every source token different, and the admin token none of them (compared as
        SHA-256, so a token given in clear is also caught against one given hashed); with
        `gateway.require_signatures`, every source has an hmac_secret."""
        seen: dict[bytes, str] = {}
        for source in self.sources:
            other = seen.setdefault(source.token_digest, source.name)
            if other != source.name:
                raise ValueError(f"sources.{source.name}.token: same token as source {other}")
        admin = self.gateway.admin_digest
        if admin is not None and admin in seen:
            raise ValueError(
                f"gateway.admin_token: same token as source {seen[admin]}; the admin token "
                "must be distinct from every source token"
            )
        if self.gateway.require_signatures:
            unsigned = [source.name for source in self.sources if source.hmac_secret is None]
            if unsigned:
                raise ValueError(
                    f"gateway.require_signatures: sources {unsigned} have no hmac_secret"
                )
            scim = [source.name for source in self.sources if source.scim]
            if scim:
                raise ValueError(
                    f"gateway.require_signatures: SCIM sources {scim} authenticate with their "
                    "bearer token only (identity providers do not sign)"
                )

    def signature_required(self, source: SourceSettings) -> bool:
        """Whether `source` must sign: it says so, or the gateway requires it of every source."""
        return source.require_signature or self.gateway.require_signatures

    def in_flight_limit(self, vendor: str) -> int:
        """Calls to `vendor` one worker process makes at once (its bulkhead)."""
        configured = self.vendors[vendor].max_in_flight
        return configured or max(1, self.worker.concurrency // 2)

    def source(self, name: str) -> SourceSettings | None:
        return next((source for source in self.sources if source.name == name), None)

    @cached_property
    def enabled_vendors(self) -> tuple[str, ...]:
        """Computed once: settings are frozen, and every post asks for it."""
        return tuple(name for name, vendor in self.vendors.items() if vendor.enabled)
