"""``fangkong``: tokens, migrations, the embedded platform, one service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import UTC, datetime
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from fangkong_common.aio import cancel_and_wait
from fangkong_common.auth import Role, issue_token
from fangkong_common.db import create_engine
from fangkong_common.logs import configure_logging
from fangkong_common.migrations import upgrade
from fangkong_common.settings import CommonSettings
from fangkong_cli import secrets as data_secrets
from fangkong_cli.services import SERVICE_NAMES, SERVICES
from fangkong_cli.simulate.command import simulate_command

app = typer.Typer(help="Fangkong 防控: the epidemic-prevention command platform.", no_args_is_help=True)
# soft_wrap: a URL with a token must stay on one line to be clicked or copied.
console = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="where SQLite files and secrets live [env FANGKONG_DATA_DIR, default ./data]"),
]


def _settings(factory, **overrides):
    """Settings, or a clear message and exit 2: a refused production secret is an operator's
    mistake, not a traceback."""
    try:
        return factory(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            where = f"FANGKONG_{field.upper()}: " if field else ""
            console.print(f"[red]设置无效 (invalid settings): {where}{error['msg']}[/]")
        raise typer.Exit(2) from None


def _data_dir(option: Path | None) -> Path:
    return option or Path(os.environ.get("FANGKONG_DATA_DIR", "./data"))


def _overrides(data_dir: Path, **extra) -> dict:
    """Settings shared by every service of this installation."""
    overrides = {"data_dir": data_dir, **data_secrets.load_or_create(data_dir)}
    overrides.update({k: v for k, v in extra.items() if v})
    return overrides


def _server(asgi_app, host: str, port: int):
    """A uvicorn server that stops gracefully on SIGINT or SIGTERM and then exits 0: a container
    stop or Ctrl-C is a normal end (uvicorn would re-raise the signal after its shutdown)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return Server(uvicorn.Config(asgi_app, host=host, port=port, log_level="warning"))


def _run(main: Awaitable[None]) -> None:
    """Run on uvloop when it is installed (uvicorn[standard] brings it), as `uvicorn.run` would."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] is pinned
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


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
    settings = _settings(CommonSettings, **_overrides(_data_dir(data_dir)))
    try:
        print(issue_token(settings.jwt_secret.get_secret_value(), role=role, regions=region or [], grids=grid or [],
                          sites=site or [], sub=sub,
                          ttl_seconds=ttl, issuer=settings.jwt_issuer, audience=settings.jwt_audience))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--region") from exc


@app.command()
def migrate(
    service: Annotated[list[str] | None, typer.Option(help="only these services (repeat)")] = None,
    data_dir: DataDir = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="a PostgreSQL URL; each service's database is <name>_<service> there "
                               "(as `fangkong up --database-url` uses them)")] = None,
) -> None:
    """Run every service's database migrations (each on its own database URL)."""
    from fangkong_cli.databases import ensure_postgres_databases, service_database_urls

    names = service or list(SERVICE_NAMES)
    unknown = set(names) - set(SERVICE_NAMES)
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {sorted(unknown)}; choose from {SERVICE_NAMES}")
    try:
        urls = service_database_urls(database_url, names)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--database-url") from exc

    async def run() -> None:
        if database_url:
            await ensure_postgres_databases(database_url, urls.values())
        for name in names:
            entry = SERVICES[name]
            settings = _settings(entry.settings, **_overrides(_data_dir(data_dir)))
            url = urls.get(name) or settings.effective_database_url
            engine = create_engine(url)
            try:
                await upgrade(engine, entry.migrations)
            finally:
                await engine.dispose()
            console.print(f"[green]✓[/] {name} migrated ({engine.url.render_as_string(hide_password=True)})")

    _run(run())


DEMO_REGION = "440300"


@app.command()
def up(
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    data_dir: DataDir = None,
    bus: Annotated[str | None, typer.Option(
        help="bus URL, e.g. kafka://127.0.0.1:9092 [default: the in-process bus, journaled in the data dir]")] = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url",
        help="a PostgreSQL URL; each service gets its own database <name>_<service> on that server, "
             "created when missing [default: a SQLite file per service under the data dir]")] = None,
    demo: Annotated[bool, typer.Option(help="load a small seeded outbreak (once per data dir) so the screen "
                                            "is alive at first sight")] = False,
) -> None:
    """Run the whole platform in one process: the four services on one port, the command screen at /."""
    from fangkong_cli.databases import ensure_postgres_databases, service_database_urls
    from fangkong_cli.platform import create_platform

    started = time.monotonic()
    directory = _data_dir(data_dir)
    if not bus and not os.environ.get("FANGKONG_BUS_URL"):
        # The in-process bus with a journal in the data dir: events survive even a crash.
        bus = f"memory://fangkong?journal={(directory / 'bus.sqlite').resolve()}"
    overrides = _overrides(directory, bus_url=bus)
    base_url = database_url or os.environ.get("FANGKONG_DATABASE_URL")
    try:
        per_service = service_database_urls(base_url, SERVICE_NAMES)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--database-url") from exc
    if base_url:
        created = asyncio.run(ensure_postgres_databases(base_url, per_service.values()))
        for name in created:
            console.print(f"created database {name}")
    # A laptop's terminal: readable warnings, unless FANGKONG_LOG_LEVEL / FANGKONG_LOG_JSON ask otherwise.
    settings = _settings(CommonSettings, **overrides)
    configure_logging(settings.log_level if "FANGKONG_LOG_LEVEL" in os.environ else "WARNING",
                      json_logs=settings.log_json and "FANGKONG_LOG_JSON" in os.environ)
    platform = create_platform(overrides, per_service={n: {"database_url": u} for n, u in per_service.items()})
    secret = settings.jwt_secret.get_secret_value()
    admin = issue_token(secret, role=Role.admin, sub="demo-admin", issuer=settings.jwt_issuer,
                        audience=settings.jwt_audience)
    commander = issue_token(secret, role=Role.commander, regions=[DEMO_REGION], sub="demo-commander",
                            issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    server = _server(platform, host, port)

    async def run() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if serving.done():  # e.g. the port is taken: uvicorn has said why
            await serving
            raise typer.Exit(code=1)
        url = f"http://{host}:{port}/"
        console.print(f"[bold]Fangkong 防控[/] 已就绪 ready in {time.monotonic() - started:.1f} s: {url}  "
                      f"(data: {directory.resolve()})")
        console.print(f"指挥大屏 command screen, signed in as commander of {DEMO_REGION}: {url}#token={commander}")
        console.print(f"演示登录 demo login: on the screen, region {DEMO_REGION} → 演示登录; "
                      f"API token (admin): {admin}")
        console.print("Ctrl-C 停止 stops it; the data stays in the data dir.")
        loading = asyncio.create_task(_load_demo(directory, url, admin)) if demo else None
        try:
            await serving
        finally:
            if loading is not None:
                await cancel_and_wait(loading)

    _run(run())


async def _load_demo(directory: Path, url: str, token: str) -> None:
    """Play a small seeded outbreak through the platform's own HTTP API, once per data dir."""
    from fangkong_cli.simulate import demo

    marker = directory / "demo-loaded"
    if marker.exists():
        console.print(f"demo data already loaded (delete {marker} to load it again)")
        return
    try:
        await demo.load(url, token)
    except Exception as exc:  # noqa: BLE001 - the platform keeps running without its demo
        console.print(f"[red]demo data not loaded: {exc!r}[/]")
        return
    marker.write_text(datetime.now(UTC).isoformat())
    console.print("[green]✓[/] demo data loaded: the screen shows a school outbreak")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"one of {', '.join(SERVICE_NAMES)}")],
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    data_dir: DataDir = None,
) -> None:
    """Run one service as its own process (what a container runs); settings from FANGKONG_* variables."""
    if service not in SERVICES:
        raise typer.BadParameter(f"choose from {SERVICE_NAMES}", param_hint="SERVICE")
    entry = SERVICES[service]
    settings = _settings(entry.settings, **_overrides(_data_dir(data_dir)))
    configure_logging(settings.log_level, json_logs=settings.log_json)
    service_app = entry.create_app(settings)
    _run(_server(service_app, host, port).serve())


app.command("simulate")(simulate_command)

if __name__ == "__main__":
    app()
