"""``fangkong``: tokens, migrations, the embedded platform, one service."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fangkong_common.auth import Role, issue_token
from fangkong_common.db import create_engine
from fangkong_common.logs import configure_logging
from fangkong_common.migrations import upgrade
from fangkong_common.settings import CommonSettings
from fangkong_cli import secrets as data_secrets
from fangkong_cli.services import SERVICE_NAMES, SERVICES
from fangkong_cli.simulate.command import simulate_command

app = typer.Typer(help="Fangkong 防控: the epidemic-prevention command platform.", no_args_is_help=True)
console = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="where SQLite files and secrets live [env FANGKONG_DATA_DIR, default ./data]"),
]


def _data_dir(option: Path | None) -> Path:
    return option or Path(os.environ.get("FANGKONG_DATA_DIR", "./data"))


def _overrides(data_dir: Path, **extra) -> dict:
    """Settings shared by every service of this installation."""
    overrides = {"data_dir": data_dir, **data_secrets.load_or_create(data_dir)}
    overrides.update({k: v for k, v in extra.items() if v})
    return overrides


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="the caller's role")],
    region: Annotated[list[str] | None, typer.Option(help="a 6-digit region code the caller may see (repeat)")] = None,
    grid: Annotated[list[str] | None, typer.Option(help="a grid (网格) the caller works in (repeat)")] = None,
    site: Annotated[list[str] | None, typer.Option(help="a site or lab id the caller serves (repeat)")] = None,
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 8 * 3600,
    sub: Annotated[str | None, typer.Option(help="subject: who or what the token is for")] = None,
    data_dir: DataDir = None,
) -> None:
    """Print a signed token (for integrations and scripts)."""
    settings = CommonSettings(**_overrides(_data_dir(data_dir)))
    try:
        print(issue_token(settings.jwt_secret.get_secret_value(), role=role, regions=region or [], grids=grid or [],
                          sites=site or [], sub=sub,
                          ttl_seconds=ttl, issuer=settings.jwt_issuer))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--region") from exc


@app.command()
def migrate(
    service: Annotated[list[str] | None, typer.Option(help="only these services (repeat)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run every service's database migrations (each on its own database URL)."""
    names = service or list(SERVICE_NAMES)
    unknown = set(names) - set(SERVICE_NAMES)
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {sorted(unknown)}; choose from {SERVICE_NAMES}")

    async def run() -> None:
        for name in names:
            entry = SERVICES[name]
            settings = entry.settings(**_overrides(_data_dir(data_dir)))
            url = os.environ.get(f"FANGKONG_{name.upper()}_DATABASE_URL") or settings.effective_database_url
            engine = create_engine(url)
            try:
                await upgrade(engine, entry.migrations)
            finally:
                await engine.dispose()
            console.print(f"[green]✓[/] {name} migrated ({engine.url.render_as_string(hide_password=True)})")

    asyncio.run(run())


@app.command()
def up(
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    data_dir: DataDir = None,
    bus: Annotated[str | None, typer.Option(help="bus URL, e.g. kafka://127.0.0.1:9092 [default memory://]")] = None,
) -> None:
    """Run the whole platform in one process (SQLite files under the data dir, in-process bus)."""
    import uvicorn

    from fangkong_cli.platform import create_platform

    directory = _data_dir(data_dir)
    overrides = _overrides(directory, bus_url=bus)
    configure_logging()
    platform = create_platform(overrides)
    settings = CommonSettings(**overrides)
    demo = issue_token(settings.jwt_secret.get_secret_value(), role=Role.admin, sub="demo-admin",
                       issuer=settings.jwt_issuer)
    console.print(f"[bold]Fangkong 防控[/] on http://{host}:{port}/  (data: {directory.resolve()})")
    console.print(f"demo admin token: {demo}")
    uvicorn.run(platform, host=host, port=port, log_level="warning")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"one of {', '.join(SERVICE_NAMES)}")],
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    data_dir: DataDir = None,
) -> None:
    """Run one service as its own process (what a container runs); settings from FANGKONG_* variables."""
    import uvicorn

    if service not in SERVICES:
        raise typer.BadParameter(f"choose from {SERVICE_NAMES}", param_hint="SERVICE")
    entry = SERVICES[service]
    configure_logging()
    service_app = entry.create_app(entry.settings(**_overrides(_data_dir(data_dir))))
    uvicorn.run(service_app, host=host, port=port, log_level="warning")


app.command("simulate")(simulate_command)

if __name__ == "__main__":
    app()
