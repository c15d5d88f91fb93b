"""Settings read from the environment (prefix ``FANGKONG_``).

One class for what every service needs; a service subclasses it for its own
knobs. In production the process refuses to start with a default or short
secret, because a known (or guessable) JWT secret lets anyone mint a
commander's token and a known person-key secret lets anyone map ID numbers to
keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-development-only-not-a-real-secret"
# HS256 keys shorter than the hash (32 bytes) can be brute-forced offline from one
# captured token (RFC 7518 3.2 asks for at least this much).
MIN_SECRET_BYTES = 32


class InsecureSettingsError(ValueError):
    """Raised when production settings still carry a default or empty secret."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FANGKONG_", extra="ignore")

    # production refuses default or short secrets and clock control; development and test allow the demo shortcuts.
    env: Literal["development", "test", "production"] = "development"
    # The service's own name: its SQLite file, its logs' and metrics' label, the events' source.
    service_name: str = "fangkong"
    # Where SQLite files, the embedded bus journal and generated secrets live.
    data_dir: Path = Path("./data")
    # Empty means "a SQLite file named after the service under data_dir".
    database_url: str = ""
    # kafka://host:port[?namespace=prefix] or memory://name[?journal=PATH] (in-process).
    bus_url: str = "memory://"
    # Partitions per topic the bus creates: the most replicas of one consumer group that can share the work.
    bus_partitions: int = 6
    # Signs and checks every token (HS256); shared by every service of an installation.
    jwt_secret: SecretStr = SecretStr(DEFAULT_SECRET)
    # The `iss` claim tokens must carry.
    jwt_issuer: str = "fangkong"
    # The `aud` claim tokens are issued with and must carry: a token minted for another
    # system sharing the secret (or with no audience) is refused.
    jwt_audience: str = "fangkong"
    # Keys the HMAC that turns an ID number into a person_key; the same for every service, never rotated lightly.
    person_key_secret: SecretStr = SecretStr(DEFAULT_SECRET)
    # Run the service's Alembic migrations at start-up (embedded mode, tests);
    # deployments run `fangkong migrate` once instead.
    auto_migrate: bool = True
    # DEBUG, INFO, WARNING, ERROR.
    log_level: str = "INFO"
    # One JSON object per log line (for a log collector); false for plain text.
    log_json: bool = True
    # Outbox rows the relay publishes per round trip to the broker.
    outbox_batch_size: int = 500
    # Fallback poll: the relay is woken at once by commits in its own process;
    # this bounds the delay for rows written by other processes.
    outbox_poll_seconds: float = 0.5
    # May an admin move the clock (PUT /<service>/clock)? For simulations and
    # demos; unset means yes except in production, where it cannot be turned on.
    clock_control: bool | None = None
    # Requests per client IP and role that hand out tokens (the demo login) within
    # login_rate_window_seconds; more answer 429 with Retry-After. 0 turns the limit off.
    login_rate_limit: int = 10
    # The window of login_rate_limit, in seconds.
    login_rate_window_seconds: float = 60.0
    # Closed records (released orders, people no longer under management) older than this
    # lose their personal data (ID number, name, phone, address); counts stay. Long enough
    # for retrospective tracing of a cluster (the longest closed loop is 21+7 days).
    retention_days: int = 180
    # How often the retention job looks for records past retention_days; 0 turns it off.
    retention_interval_seconds: float = 3600.0

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> "CommonSettings":
        if self.env != "production":
            return self
        if self.clock_control:
            raise InsecureSettingsError("FANGKONG_CLOCK_CONTROL cannot be on when FANGKONG_ENV=production")
        for name in ("jwt_secret", "person_key_secret"):
            value = getattr(self, name).get_secret_value()
            if not value or value == DEFAULT_SECRET:
                raise InsecureSettingsError(
                    f"FANGKONG_{name.upper()} must be set to a non-default secret "
                    "when FANGKONG_ENV=production"
                )
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise InsecureSettingsError(
                    f"FANGKONG_{name.upper()} is {len(value.encode())} bytes; at least {MIN_SECRET_BYTES} "
                    "when FANGKONG_ENV=production (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')"
                )
        return self

    @property
    def clock_controllable(self) -> bool:
        return self.env != "production" if self.clock_control is None else self.clock_control

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"
