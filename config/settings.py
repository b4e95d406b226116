"""The configuration file's shape (docs/contract.md §4), validated once at start-up and passed down.

Every model forbids unknown keys so that a typo in a deployment's YAML is an error that names
the key, not a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from config.common import (
    NAME_PATTERN,
    SKIP_CROSS_CHECKS,
    SettingsProblems,
    Strict,
)
from config.ingress import ADMIN_SETTER, GatewaySettings, SourceSettings
from config.storage import RedisSettings
from config.vendors import VendorSettings


class WorkerSettings(Strict):
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


class SandboxSettings(Strict):
    enabled: bool = Field(default=False, description="`usersync run` also starts the simulators")
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)


class RetentionSettings(Strict):
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


class SecretsSettings(Strict):
    """Keys that encrypt secret fields (passwords) before they are written to Redis."""

    keys: list[FernetKey] = Field(
        default_factory=list,
        description="Fernet keys: the first encrypts, every one decrypts (rotation); none: "
        "events carrying a password are refused",
    )


LogFormat = Literal["auto", "json", "console"]
"""`logging.format`: `auto` is `console` when stdout is a terminal, else `json`."""


class LoggingSettings(Strict):
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


class Settings(Strict):
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
