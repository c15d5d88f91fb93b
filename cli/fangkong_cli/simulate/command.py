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
    what_if: Annotated[list[str] | None, typer.Option(
        "--what-if", help="LEVER=VALUE: beds, rooms, labs, doctors =+50%/-20%; pool-ratio=1|5|10|20; "
                          "supporting-cities=0..7 or ±N%. Each --what-if is its own run beside an unchanged "
                          "baseline (same seed), each on a fresh throwaway embedded platform (--url, --token are "
                          "not used); repeat to compare levers")] = None,
    combined: Annotated[bool, typer.Option(
        "--combined", help="with several --what-if: one more run with all of them together")] = False,
    brief: Annotated[Path | None, typer.Option(
        "--brief", help="with --what-if: save the comparison as a brief, out.xlsx or out.pdf (zh-CN headings)")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json-out", help="with --what-if: write the comparison as JSON (rewritten after each run, with its status)")]
        = None,
) -> None:
    """Play an outbreak through the public HTTP APIs at an accelerated clock (推演).

    With --what-if: the same seeded outbreak unchanged and once per lever, side by side
    (the four intervals, the four KPIs, the peak backlog and beds short)."""
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
    if what_if or combined or brief or json_out:
        if record is not None:
            raise _fail("--record 不能与 --what-if 同用", "--record does not go with --what-if", lang)
        raise typer.Exit(_what_if(scenario, what_if or [], combined=combined, brief=brief, json_out=json_out,
                                  seed=seed, scale=scale, people=people, prevalence=prevalence, start=start,
                                  progress=progress, lang=lang))
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


def _what_if(scenario: str, texts: list[str], *, combined: bool, brief: Path | None, json_out: Path | None,
             seed: int, scale: float, people: int, prevalence: float | None, start: str | None, progress: bool,
             lang: str) -> int:
    """The what-if comparison; every flag is checked before the first run starts."""
    from datetime import date

    from rich.console import Console

    from fangkong_cli.simulate.levers import LeverError, check_applicable, parse_levers
    from fangkong_cli.simulate.whatif import compare, plan
    from fangkong_cli.simulate.whatif_table import render, save_brief

    if not texts:
        raise typer.BadParameter("至少给一个 --what-if（如 beds=+50%）" if lang != "en"
                                 else "give at least one --what-if (e.g. beds=+50%)", param_hint="--what-if")
    try:
        levers = parse_levers(texts, combined=combined)
        check_applicable(scenario, levers)
    except LeverError as exc:
        raise typer.BadParameter(exc.text(lang), param_hint="--what-if") from None
    if brief is not None and brief.suffix.lower() not in (".xlsx", ".pdf"):
        raise typer.BadParameter(f"应以 .xlsx 或 .pdf 结尾：{brief}" if lang != "en"
                                 else f"must end in .xlsx or .pdf: {brief}", param_hint="--brief")
    for path, flag in ((brief, "--brief"), (json_out, "--json-out")):
        if path is not None and not path.resolve().parent.is_dir():
            raise typer.BadParameter(f"目录不存在：{path.parent}" if lang != "en"
                                     else f"no such directory: {path.parent}", param_hint=flag)
    first = None
    if start is not None:
        try:
            first = date.fromisoformat(start)
        except ValueError:
            raise typer.BadParameter(f"不是日期 YYYY-MM-DD：{start!r}" if lang != "en"
                                     else f"not a date YYYY-MM-DD: {start!r}", param_hint="--start") from None
    if brief is not None and brief.suffix.lower() == ".pdf":
        # The PDF needs a CJK font: say so now, not after the runs.
        from dashboard.config import Settings as DashboardSettings

        fonts = list(DashboardSettings.model_fields["cjk_font_paths"].default)
        if not any(p.exists() for p in fonts):
            raise typer.BadParameter(("没有中文 TrueType 字体（请安装 fonts-wqy-microhei）" if lang != "en"
                                      else "no TrueType CJK font (install fonts-wqy-microhei)") + f": {fonts[0]}",
                                     param_hint="--brief")
    runs = plan(levers, combined)
    out = Console()

    def on_run(i: int, total: int, spec, result) -> None:
        label = spec.label(lang)
        if result is None:
            err.print(f"[bold]{i + 1}/{total}[/] {label} …")
        else:
            err.print(f"[green]✓[/] {label}: {result['wall_seconds']:.0f} s")

    err.print(f"推演 {len(runs)} 次（基线 + {len(runs) - 1} 个假设），每次一个临时平台" if lang != "en"
              else f"{len(runs)} runs (baseline + {len(runs) - 1} what-ifs), each on a throwaway platform")
    # A stop (SIGTERM, e.g. the screen's cancel) unwinds like Ctrl-C: the throwaway platforms are stopped.
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        comparison = asyncio.run(compare(scenario, levers, seed=seed, scale=scale, people=people, combined=combined,
                                         prevalence=prevalence, progress=progress, json_out=json_out, start=first,
                                         on_run=on_run))
    except SimulationError as exc:
        raise _fail(f"推演中止：{exc}", f"simulation stopped: {exc}", lang, code=1) from None
    out.print(render(comparison, lang))
    if brief is not None:
        save_brief(comparison, brief, lang)
        err.print(f"[green]✓[/] {'简报已保存' if lang != 'en' else 'brief saved'}: {brief}")
    return 0


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
