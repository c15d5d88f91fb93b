"""CommonSettings: environment variables, production guard rails, the default database."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from fangkong_common.settings import DEFAULT_SECRET, CommonSettings, InsecureSettingsError

STRONG_JWT = "jwt-secret-for-production-0123456789abcdef"
STRONG_PK = "person-key-secret-for-production-0123456789"


def test_defaults_are_development() -> None:
    settings = CommonSettings()
    assert settings.env == "development"
    assert settings.jwt_secret.get_secret_value() == DEFAULT_SECRET
    assert settings.bus_url == "memory://"


def test_values_come_from_fangkong_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FANGKONG_SERVICE_NAME", "registry")
    monkeypatch.setenv("FANGKONG_BUS_URL", "kafka://broker:9092")
    monkeypatch.setenv("FANGKONG_BUS_PARTITIONS", "12")
    monkeypatch.setenv("FANGKONG_JWT_SECRET", "from-the-environment")
    monkeypatch.setenv("FANGKONG_AUTO_MIGRATE", "false")
    monkeypatch.setenv("FANGKONG_DATA_DIR", str(tmp_path))
    settings = CommonSettings()
    assert settings.service_name == "registry"
    assert settings.bus_url == "kafka://broker:9092"
    assert settings.bus_partitions == 12
    assert settings.jwt_secret.get_secret_value() == "from-the-environment"
    assert settings.auto_migrate is False
    assert settings.data_dir == tmp_path


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "unprefixed")
    monkeypatch.setenv("SERVICE_NAME", "unprefixed")
    settings = CommonSettings()
    assert settings.jwt_secret.get_secret_value() == DEFAULT_SECRET
    assert settings.service_name == "fangkong"


def test_secrets_do_not_show_in_repr() -> None:
    settings = CommonSettings(jwt_secret="do-not-print-me")
    assert "do-not-print-me" not in repr(settings)


def test_invalid_env_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANGKONG_ENV", "staging")
    with pytest.raises(ValidationError):
        CommonSettings()


def _insecure_cause(exc: ValidationError) -> InsecureSettingsError:
    [error] = exc.errors()
    cause = error["ctx"]["error"]
    assert isinstance(cause, InsecureSettingsError)
    return cause


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({}, "FANGKONG_JWT_SECRET"),
        ({"jwt_secret": ""}, "FANGKONG_JWT_SECRET"),
        ({"jwt_secret": DEFAULT_SECRET, "person_key_secret": STRONG_PK}, "FANGKONG_JWT_SECRET"),
        ({"jwt_secret": STRONG_JWT}, "FANGKONG_PERSON_KEY_SECRET"),
        ({"jwt_secret": STRONG_JWT, "person_key_secret": ""}, "FANGKONG_PERSON_KEY_SECRET"),
    ],
    ids=["both-default", "jwt-empty", "jwt-default", "pk-default", "pk-empty"],
)
def test_production_refuses_default_or_empty_secrets(overrides: dict, variable: str) -> None:
    with pytest.raises(ValidationError, match=variable) as caught:
        CommonSettings(env="production", **overrides)
    assert variable in str(_insecure_cause(caught.value))


def test_production_guard_applies_to_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANGKONG_ENV", "production")
    monkeypatch.setenv("FANGKONG_JWT_SECRET", STRONG_JWT)
    with pytest.raises(ValidationError, match="FANGKONG_PERSON_KEY_SECRET"):
        CommonSettings()


def test_production_with_both_secrets_set_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANGKONG_ENV", "production")
    monkeypatch.setenv("FANGKONG_JWT_SECRET", STRONG_JWT)
    monkeypatch.setenv("FANGKONG_PERSON_KEY_SECRET", STRONG_PK)
    settings = CommonSettings()
    assert settings.env == "production"
    assert settings.jwt_secret.get_secret_value() == STRONG_JWT
    assert settings.person_key_secret.get_secret_value() == STRONG_PK


@pytest.mark.parametrize("env", ["development", "test"])
def test_default_secrets_are_fine_outside_production(env: str) -> None:
    assert CommonSettings(env=env, jwt_secret="").env == env


def test_effective_database_url_is_a_sqlite_file_named_after_the_service(tmp_path: Path) -> None:
    settings = CommonSettings(service_name="registry", data_dir=tmp_path)
    url = make_url(settings.effective_database_url)
    assert url.drivername == "sqlite+aiosqlite"
    assert Path(url.database) == tmp_path / "registry.db"


def test_effective_database_url_default_is_under_relative_data_dir() -> None:
    url = make_url(CommonSettings().effective_database_url)
    assert url.drivername == "sqlite+aiosqlite"
    assert Path(url.database) == Path("data") / "fangkong.db"


def test_subclass_service_name_names_the_database(tmp_path: Path) -> None:
    class TestingSettings(CommonSettings):
        service_name: str = "testing"

    url = make_url(TestingSettings(data_dir=tmp_path).effective_database_url)
    assert Path(url.database) == tmp_path / "testing.db"


def test_explicit_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANGKONG_DATABASE_URL", "postgresql+asyncpg://u@db/registry")
    assert CommonSettings(service_name="registry").effective_database_url == "postgresql+asyncpg://u@db/registry"


@pytest.mark.parametrize("name", ["jwt_secret", "person_key_secret"])
def test_production_refuses_short_secrets(name: str) -> None:
    strong = {"jwt_secret": STRONG_JWT, "person_key_secret": STRONG_PK}
    with pytest.raises(ValidationError, match=f"FANGKONG_{name.upper()} is 31 bytes") as caught:
        CommonSettings(env="production", **{**strong, name: "x" * 31})
    assert "32" in str(_insecure_cause(caught.value))
    assert CommonSettings(env="production", **{**strong, name: "x" * 32}).env == "production"
