"""Settings read from the environment (prefix ``FANGKONG_``).

One class for what every service needs; a service subclasses it for its own
knobs. In production the process refuses to start with a default secret,
because a known JWT secret lets anyone mint a commander's token and a known
person-key secret lets anyone map ID numbers to keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-development-only-not-a-real-secret"


class InsecureSettingsError(ValueError):
    """Raised when production settings still carry a default or empty secret."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FANGKONG_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    service_name: str = "fangkong"
    data_dir: Path = Path("./data")
    # Empty means "a SQLite file named after the service under data_dir".
    database_url: str = ""
    bus_url: str = "memory://"
    bus_partitions: int = 6
    jwt_secret: SecretStr = SecretStr(DEFAULT_SECRET)
    jwt_issuer: str = "fangkong"
    person_key_secret: SecretStr = SecretStr(DEFAULT_SECRET)
    # Run the service's Alembic migrations at start-up (embedded mode, tests);
    # deployments run `fangkong migrate` once instead.
    auto_migrate: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    outbox_batch_size: int = 500
    # Fallback poll: the relay is woken at once by commits in its own process;
    # this bounds the delay for rows written by other processes.
    outbox_poll_seconds: float = 0.5
    # May an admin move the clock (PUT /<service>/clock)? For simulations and
    # demos; unset means yes except in production, where it cannot be turned on.
    clock_control: bool | None = None

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
        return self

    @property
    def clock_controllable(self) -> bool:
        return self.env != "production" if self.clock_control is None else self.clock_control

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"
