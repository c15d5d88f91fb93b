"""The fangkong command: ``token`` and ``migrate``."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fangkong_common.auth import Principal, Role, TokenError, decode_token
from fangkong_cli.main import app

SERVICES = ("registry", "quarantine", "testing", "dashboard")
JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def _token(runner: CliRunner, data_dir: Path, *args: str) -> str:
    result = runner.invoke(app, ["token", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert JWT.match(token), result.stdout
    return token


def _stored_jwt_secret(data_dir: Path) -> str:
    return json.loads((data_dir / "secrets.json").read_text())["jwt_secret"]


# --- token --------------------------------------------------------------------


def test_token_is_signed_with_the_secret_stored_in_the_data_dir(runner: CliRunner, tmp_path: Path) -> None:
    token = _token(runner, tmp_path, "--role", "commander", "--region", "440300", "--sub", "chief")
    principal = decode_token(token, _stored_jwt_secret(tmp_path))
    assert principal == Principal(sub="chief", role=Role.commander, regions=["440300"])


def test_secrets_file_is_created_private_with_both_secrets(runner: CliRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"  # does not exist yet
    _token(runner, data_dir, "--role", "viewer")
    path = data_dir / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) == {"jwt_secret", "person_key_secret"}
    assert len(stored["jwt_secret"]) >= 32
    assert stored["jwt_secret"] != stored["person_key_secret"]


def test_second_run_reuses_the_stored_secret(runner: CliRunner, tmp_path: Path) -> None:
    first = _token(runner, tmp_path, "--role", "commander", "--region", "440300")
    content = (tmp_path / "secrets.json").read_text()
    second = _token(runner, tmp_path, "--role", "lab", "--region", "440305", "--region", "110000")
    assert (tmp_path / "secrets.json").read_text() == content
    secret = _stored_jwt_secret(tmp_path)
    assert decode_token(first, secret).regions == ["440300"]
    assert decode_token(second, secret).regions == ["440305", "110000"]


def test_different_data_dirs_get_different_secrets(runner: CliRunner, tmp_path: Path) -> None:
    token = _token(runner, tmp_path / "one", "--role", "admin")
    _token(runner, tmp_path / "two", "--role", "admin")
    with pytest.raises(TokenError):
        decode_token(token, _stored_jwt_secret(tmp_path / "two"))


def test_environment_jwt_secret_wins_over_the_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _token(runner, tmp_path, "--role", "admin")  # the file now holds a generated secret
    env_secret = "secret-from-the-environment-0123456789abcdef"
    monkeypatch.setenv("FANGKONG_JWT_SECRET", env_secret)
    token = _token(runner, tmp_path, "--role", "commander", "--region", "440300")
    assert decode_token(token, env_secret).role is Role.commander
    with pytest.raises(TokenError):
        decode_token(token, _stored_jwt_secret(tmp_path))


def test_data_dir_from_the_environment(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANGKONG_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["token", "--role", "viewer", "--region", "440000"])
    assert result.exit_code == 0, result.output
    assert decode_token(result.stdout.strip(), _stored_jwt_secret(tmp_path)).regions == ["440000"]


def test_ttl_sets_the_token_lifetime(runner: CliRunner, tmp_path: Path) -> None:
    import jwt

    token = _token(runner, tmp_path, "--role", "integration", "--ttl", "60")
    claims = jwt.decode(token, _stored_jwt_secret(tmp_path), algorithms=["HS256"], issuer="fangkong",
                        audience="fangkong")
    assert claims["exp"] - claims["iat"] == 60 and claims["aud"] == "fangkong"


@pytest.mark.parametrize("code", ["12", "4403000", "44030x"])
def test_bad_region_code_exits_non_zero_with_a_message(runner: CliRunner, tmp_path: Path, code: str) -> None:
    result = runner.invoke(app, ["token", "--role", "commander", "--region", code, "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert result.stdout.strip() == ""  # no token printed
    message = " ".join(result.output.split())
    assert "--region" in message
    assert "6 digits" in message


def test_unknown_role_exits_non_zero(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "--role", "emperor", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "emperor" in result.output
    assert result.stdout.strip() == ""


# --- migrate ------------------------------------------------------------------


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _alembic_versions(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [version for (version,) in conn.execute("SELECT version_num FROM alembic_version")]


def test_migrate_creates_every_service_database_and_is_repeatable(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    heads = {}
    for name in SERVICES:
        path = tmp_path / f"{name}.db"
        assert path.is_file(), f"{name}.db missing"
        assert {"outbox", "inbox", "alembic_version"} <= _tables(path), name
        heads[name] = _alembic_versions(path)
        assert len(heads[name]) == 1, name
        assert name in result.output

    again = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert again.exit_code == 0, again.output
    for name in SERVICES:
        assert _alembic_versions(tmp_path / f"{name}.db") == heads[name]


def test_migrate_a_single_service(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", "--service", "registry", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {"outbox", "inbox", "alembic_version"} <= _tables(tmp_path / "registry.db")
    assert not (tmp_path / "quarantine.db").exists()


def test_migrate_unknown_service_fails_without_touching_anything(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", "--service", "billing", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "billing" in result.output
    assert not list(tmp_path.glob("*.db"))


def test_migrate_honours_a_per_service_database_url(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere" / "reg.db"
    monkeypatch.setenv("FANGKONG_REGISTRY_DATABASE_URL", f"sqlite+aiosqlite:///{elsewhere}")
    result = runner.invoke(app, ["migrate", "--service", "registry", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {"outbox", "inbox", "alembic_version"} <= _tables(elsewhere)
    assert not (tmp_path / "registry.db").exists()
