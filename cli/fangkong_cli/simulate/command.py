"""``fangkong simulate``: the typer command around ``play``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console

from fangkong_cli.simulate.client import SERVICES, SimulationError, Target
from fangkong_cli.simulate.runner import SCENARIOS

err = Console(stderr=True)


def _fail(message_zh: str, message_en: str, lang: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]错误[/] {message_zh}" if lang != "en" else f"[red]error[/] {message_en}")
    return typer.Exit(code=code)


def _url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    return value.rstrip("/")


def simulate_command(
    scenario: Annotated[str, typer.Option(help=f"one of {', '.join(SCENARIOS)}")],
    seed: Annotated[int, typer.Option(help="same seed → same requests and same ground truth")] = 1,
    scale: Annotated[float, typer.Option(help="shrink (or grow) the scenario proportionally, e.g. 0.02")] = 1.0,
    people: Annotated[int, typer.Option(help="mass-screening: the city's population (10,000,000 = benchmark)")] = 100_000,
    url: Annotated[str, typer.Option(help="the embedded platform or gateway")] = "http://127.0.0.1:8000",
    service_url: Annotated[list[str] | None, typer.Option(
        "--service-url", help="SERVICE=URL per service (multi-process platform without a gateway; repeat)")] = None,
    token: Annotated[str | None, typer.Option(help="an admin token [env FANGKONG_TOKEN]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="sign an admin token with this installation's secret (like `fangkong token`)")] = None,
    lang: Annotated[str, typer.Option(help="zh (default) or en")] = "zh",
    record: Annotated[Path | None, typer.Option(help="write the ground truth here as JSON lines")] = None,
    start: Annotated[str | None, typer.Option(help="first simulated day YYYY-MM-DD (default: ends yesterday)")] = None,
    prevalence: Annotated[float | None, typer.Option(help="mass-screening: share of people infected")] = None,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 16,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="rich progress bars")] = True,
) -> None:
    """Play an outbreak through the public HTTP APIs at an accelerated clock (推演)."""
    from datetime import date

    from fangkong_cli.simulate.report import print_summary
    from fangkong_cli.simulate.runner import play

    if lang not in ("zh", "en"):
        raise _fail(f"--lang 只能是 zh 或 en，而不是 {lang!r}", f"--lang must be zh or en, not {lang!r}", "zh")
    if scenario not in SCENARIOS:
        raise _fail(f"未知场景 {scenario!r}，可选：{', '.join(SCENARIOS)}",
                    f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}", lang)
    if not 0 < scale <= 100:
        raise _fail("--scale 须大于 0 且不超过 100", "--scale must be > 0 and ≤ 100", lang)
    if people < 10:
        raise _fail("--people 至少为 10", "--people must be at least 10", lang)
    if prevalence is not None and not 0 <= prevalence < 1:
        raise _fail("--prevalence 须在 [0, 1) 之间", "--prevalence must be in [0, 1)", lang)
    if concurrency < 1:
        raise _fail("--concurrency 至少为 1", "--concurrency must be at least 1", lang)
    base = _url(url)
    if base is None:
        raise _fail(f"--url 不是 http(s) 地址：{url!r}", f"--url is not an http(s) URL: {url!r}", lang)
    services: dict[str, str] = {}
    for item in service_url or []:
        name, _, value = item.partition("=")
        if name not in SERVICES or not _url(value):
            raise _fail(f"--service-url 应为 服务=地址（服务：{', '.join(SERVICES)}），而不是 {item!r}",
                        f"--service-url must be SERVICE=URL (SERVICE one of {', '.join(SERVICES)}), not {item!r}",
                        lang)
        services[name] = _url(value)
    first_day = None
    if start is not None:
        try:
            first_day = date.fromisoformat(start)
        except ValueError:
            raise _fail(f"--start 不是日期 YYYY-MM-DD：{start!r}", f"--start is not a date YYYY-MM-DD: {start!r}",
                        lang) from None
    token = token or os.environ.get("FANGKONG_TOKEN")
    if token and data_dir:
        raise _fail("--token 与 --data-dir 只能给一个", "give --token or --data-dir, not both", lang)
    if not token:
        token = _admin_token(data_dir or Path(os.environ.get("FANGKONG_DATA_DIR", "./data")), lang)
    target = Target(token=token, url=base, service_urls=services, concurrency=concurrency)
    try:
        summary = asyncio.run(play(scenario, target, seed=seed, scale=scale, people=people, start=first_day,
                                   record=record, progress=progress, prevalence=prevalence))
    except SimulationError as exc:
        raise _fail(f"推演中止：{exc}", f"simulation stopped: {exc}", lang, code=1) from None
    except OSError as exc:  # cannot write --record, …
        raise _fail(f"推演中止：{exc}", f"simulation stopped: {exc}", lang, code=1) from None
    print_summary(summary, lang)


def _admin_token(data_dir: Path, lang: str) -> str:
    """An admin token signed with the installation's secret (as `fangkong token --role admin` does)."""
    from fangkong_common.auth import Role, issue_token
    from fangkong_common.settings import CommonSettings

    from fangkong_cli import secrets as data_secrets

    if not (data_dir / data_secrets.SECRETS_FILE).exists() and not os.environ.get("FANGKONG_JWT_SECRET"):
        raise _fail(f"{data_dir} 下没有该平台的密钥（secrets.json）：请给 --token，或 --data-dir 指向 `fangkong up` 的数据目录",
                    f"no installation secrets in {data_dir} (secrets.json): give --token, or --data-dir pointing at "
                    f"the data dir of `fangkong up`", lang)
    settings = CommonSettings(**data_secrets.load_or_create(data_dir))
    return issue_token(settings.jwt_secret.get_secret_value(), role=Role.admin, sub="simulator",
                       ttl_seconds=24 * 3600, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
