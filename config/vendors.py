"""`vendors:`: each vendor instance, its credentials, limits, retries and circuit breaker."""

from __future__ import annotations

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    field_validator,
)

from config.common import (
    Strict,
)


class RetrySettings(Strict):
    max_attempts: int = Field(default=8, ge=1, le=100)
    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    max_age_s: int = Field(default=86400, ge=1)


class RateLimitSettings(Strict):
    per_second: float = Field(default=10.0, gt=0, description="calls per second, all workers")
    burst: int = Field(default=20, ge=1, description="calls allowed at once after a quiet spell")
    recovery_s: float = Field(
        default=30.0,
        gt=0,
        description="after a 429 halves the rate, time to climb back to per_second",
    )


class CircuitBreakerSettings(Strict):
    failure_threshold: int = Field(
        default=5, ge=1, description="consecutive failed calls that open the circuit"
    )
    cooldown_s: float = Field(
        default=10.0, gt=0, description="how long an open circuit holds calls off before a probe"
    )
    max_cooldown_s: float = Field(
        default=300.0, gt=0, description="the cool-down doubles after each failed probe, to this"
    )


class VendorAuth(Strict):
    token: SecretStr

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value


class VendorSettings(Strict):
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
