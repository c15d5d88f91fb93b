"""The benchmark runner: every scenario of issue 9 beside the baselines that bound it, in one run.

    .venv/bin/python -m bench                       # the full run: the city of 10M (long)
    .venv/bin/python -m bench --scale 1000000       # the same at a city of 1M people
    .venv/bin/python -m bench --smoke               # every scenario scaled down to seconds (CI)
    .venv/bin/python -m bench --only plan --only kpi
    .venv/bin/python -m bench --kafka HOST:PORT --database-url postgresql://…   # use running servers

Starts Kafka and PostgreSQL once (scripts/kafka, scripts/postgres) unless given, generates every
workload from fixed seeds, measures the baselines in the same run (raw aiokafka produce/consume,
asyncpg COPY and batched INSERTs of the mass-screening rows, a bare uvicorn endpoint), writes the
figures as JSON (test-artifacts/bench/ or --json) and the table into docs/PERFORMANCE.md (or --out),
between its generated-block markers. A failed scenario is reported and makes the exit status 1;
the smoke run asserts no timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _components  # noqa: E402
import _report  # noqa: E402
from _util import ROOT, asyncpg_dsn, drop_database, fresh_database, sqlalchemy_url  # noqa: E402

SEED = 20220404
CITY_OF_10M = 10_000_000


@dataclass(frozen=True)
class Sizes:
    """How big each workload is: the goal's size in a full run, seconds' worth in a smoke run."""

    smoke: bool
    people: int  # the city: mass-screening members, travel records, people behind the KPI read models
    prevalence: float
    clients: int
    tubes_per_post: int
    positive_samples: int
    background_rate: int
    pool_tubes: int
    pool_prevalence: float
    pool_solo: int
    plan: tuple[int, int, int, int]  # sites, labs, half-hours, tubes a day
    registry_import: int
    registry_passes: int
    kpi_queries: int
    messages: int
    payload_bytes: int
    http_requests: int
    screening_timeout: float
    replica_events: int  # the backlog the dashboard drains with one replica, then with two

    @classmethod
    def smoke_run(cls) -> Sizes:
        return cls(smoke=True, people=2_000, prevalence=2e-3, clients=4, tubes_per_post=50, positive_samples=3,
                   background_rate=200, pool_tubes=200, pool_prevalence=0.02, pool_solo=3,
                   plan=(40, 8, 8, 20_000), registry_import=20, registry_passes=100, kpi_queries=10,
                   messages=2_000, payload_bytes=300, http_requests=300, screening_timeout=120,
                   replica_events=2_000)

    @classmethod
    def full_run(cls, people: int) -> Sizes:
        return cls(smoke=False, people=people, prevalence=1e-4, clients=4, tubes_per_post=1000,
                   positive_samples=200 if people >= CITY_OF_10M else 50, background_rate=1000, pool_tubes=max(1000, min(100_000, people // 100)),
                   pool_prevalence=1e-3, pool_solo=200, plan=(1000, 200, 48, 3_000_000), registry_import=5000,
                   registry_passes=20_000, kpi_queries=400, messages=100_000, payload_bytes=300,
                   http_requests=5000, screening_timeout=max(600.0, people / 500), replica_events=100_000)


class Context:
    """What the scenarios share: the servers, the sizes, and baselines measured once when first asked."""

    def __init__(self, bootstrap: str, server_url: str, sizes: Sizes, stack: contextlib.AsyncExitStack,
                 directory: Path) -> None:
        self.bootstrap, self.server_url, self.sizes = bootstrap, server_url, sizes
        self.stack, self.directory = stack, directory
        self.baselines: dict[str, dict] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._platform = None

    async def baseline(self, name: str) -> dict:
        async with self._locks.setdefault(name, asyncio.Lock()):  # measured once, whoever asks first
            return await self._baseline(name)

    async def _baseline(self, name: str) -> dict:
        if name not in self.baselines:
            import _baselines

            started = time.perf_counter()
            if name == "http":
                figures = await _baselines.bare_endpoint(self.sizes.http_requests, self.sizes.clients)
            elif name == "rows":
                figures = await _baselines.postgres_rows(self.server_url, self.sizes.people)
            elif name == "kafka":
                figures = await raw_kafka(self.bootstrap, self.sizes.messages, self.sizes.payload_bytes)
            else:  # pragma: no cover - a programming error
                raise KeyError(name)
            figures["wall_s"] = round(time.perf_counter() - started, 1)
            self.baselines[name] = figures
            print(f"  baseline {name}: {figures}", flush=True)
        return self.baselines[name]

    def prestart_platform(self) -> None:
        """Smoke runs only: start the four service processes while the other scenarios run (their
        timings then mean nothing, which a smoke run does not claim); a full run starts them when
        first needed, on a quiet machine."""
        self._platform = asyncio.ensure_future(self._start_platform())

    async def _start_platform(self):
        import _platform

        return await self.stack.enter_async_context(
            _platform.running_platform(self.bootstrap, self.server_url, self.directory))

    async def platform(self):
        if self._platform is None:
            self._platform = asyncio.ensure_future(self._start_platform())
        return await self._platform

    async def database(self, prefix: str) -> str:
        """A fresh database (SQLAlchemy asyncpg URL), dropped at the end of the run."""
        dsn = await fresh_database(self.server_url, prefix)
        self.stack.push_async_callback(drop_database, self.server_url, dsn)
        return sqlalchemy_url(dsn)


async def raw_kafka(bootstrap: str, count: int, payload_bytes: int) -> dict:
    import uuid

    import bus as bus_bench
    from fangkong_common.bus.kafka import KafkaBus

    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(f"kafka://{bootstrap}", partitions=6, client_id="bench-raw")
    await bus.start()
    try:
        await bus.ensure_topics([topic])
    finally:
        await bus.stop()
    produce = await bus_bench.raw_produce(bootstrap, topic, bus_bench.envelopes(topic, count, payload_bytes))
    consume = await bus_bench.raw_consume(bootstrap, topic, count)
    return {"messages": count, "payload_bytes": payload_bytes, "acks": "all",
            "produce_per_s": round(count / produce), "consume_per_s": round(count / consume)}


# --- scenarios: each returns its figures; the report turns them into rows ------------------------


async def scenario_bus(ctx: Context) -> dict:
    import bus as bus_bench

    url = await ctx.database("bench_bus")
    result = await bus_bench.measure(ctx.bootstrap, url, ctx.sizes.messages, ctx.sizes.payload_bytes)
    count = result["events"]
    return {"events": count, "payload_bytes": result["payload_bytes"],
            **{f"{name}_per_s": round(count / seconds) for name, seconds in result["seconds"].items()}}


async def scenario_faststream(ctx: Context) -> dict:
    import _faststream

    await ctx.baseline("kafka")
    return await _faststream.bus_vs_faststream(ctx.bootstrap, ctx.sizes.messages, ctx.sizes.payload_bytes)


async def scenario_screening(ctx: Context) -> dict:
    import _platform

    await ctx.baseline("rows")
    await ctx.baseline("http")
    s = ctx.sizes
    return await _platform.mass_screening(await ctx.platform(), s.people, s.prevalence, SEED, s.clients,
                                          s.tubes_per_post, s.screening_timeout)


async def scenario_positive(ctx: Context) -> dict:
    import _platform

    await ctx.baseline("http")
    s = ctx.sizes
    return await _platform.positive_latency(await ctx.platform(), s.positive_samples, s.background_rate, SEED,
                                            warm_up=0.5 if s.smoke else 3.0)


async def scenario_replicas(ctx: Context) -> dict:
    import _replicas

    n = ctx.sizes.replica_events
    return await _replicas.replicas(await ctx.platform(), n, timeout=max(120.0, n / 100))


async def scenario_retests(ctx: Context) -> dict:
    import uuid

    from rich.console import Console

    import testing_throughput

    await ctx.baseline("http")
    s = ctx.sizes
    args = argparse.Namespace(seed=SEED, sites=max(4, min(330, s.pool_tubes // 100)), labs=4, tubes=s.pool_tubes,
                              prevalence=s.pool_prevalence, batch=1000, result_batch=1000, clients=s.clients,
                              solo=s.pool_solo)
    url = await ctx.database("bench_retests")
    bus_url = f"kafka://{ctx.bootstrap}?namespace=bench{uuid.uuid4().hex[:8]}"
    figures = await testing_throughput.ingest(url, bus_url, args, Console(quiet=True))
    figures.pop("events", None)
    return figures


async def scenario_plan(ctx: Context) -> dict:
    import testing_throughput

    sites, labs, slots, per_day = ctx.sizes.plan
    return await asyncio.to_thread(testing_throughput.plan_bench, sites, labs, slots, per_day, SEED)


async def scenario_risk_area(ctx: Context) -> dict:
    import registry_throughput

    s = ctx.sizes
    args = argparse.Namespace(import_rows=s.registry_import, passes=s.registry_passes, travel=s.people, seed=7,
                              area=registry_throughput.COUNTIES[7])
    result = await registry_throughput.run(args, asyncpg_dsn(ctx.server_url))
    risk = result["risk_area"]
    return {"travel_records": risk["travel_records"], "flagged": risk["flagged"],
            "seconds": round(risk["seconds"], 3), "baseline_select_seconds": round(risk["baseline_select_seconds"], 3),
            "import_rows_per_s": round(result["import"]["rows_per_s"]),
            "import_copy_rows_per_s": round(result["import"]["baseline_copy_rows_per_s"]),
            "passes_per_s": round(result["passes"]["passes_per_s"]),
            "passes_copy_rows_per_s": round(result["passes"]["baseline_copy_rows_per_s"])}


async def scenario_kpi(ctx: Context) -> dict:
    import dashboard_throughput

    await ctx.baseline("http")
    url = await ctx.database("bench_kpi")
    # 60 days of counters as a season of the epidemic writes them; two in a smoke run (its rows, not
    # the people, cost the set-up time)
    figures = await dashboard_throughput.latency(url, ctx.sizes.people, ctx.sizes.kpi_queries,
                                                 2 if ctx.sizes.smoke else 60)
    kpis = {k: v for k, v in figures.items() if k.startswith("kpis_")}
    figures["kpis_p99_ms_worst"] = max(v["p99"] for v in kpis.values())
    figures["people"] = ctx.sizes.people
    figures["queries"] = ctx.sizes.kpi_queries
    return figures


# In the order they run: the three on the multi-process platform last (a smoke run starts it meanwhile).
SCENARIOS: dict[str, Callable[[Context], Awaitable[dict]]] = {
    "bus": scenario_bus,
    "faststream": scenario_faststream,
    "retests": scenario_retests,
    "plan": scenario_plan,
    "risk_area": scenario_risk_area,
    "kpi": scenario_kpi,
    "screening": scenario_screening,
    "positive": scenario_positive,
    "replicas": scenario_replicas,
}
PLATFORM_SCENARIOS = {"screening", "positive", "replicas"}


def parse_scale(text: str) -> int:
    """10000000, 10M, 1m, 500k."""
    value = text.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(value[-1:], 1)
    try:
        people = int(float(value[:-1] if factor > 1 else value) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale wants a number of people like 10M, 1000000 or 500k, not {text!r}")
    if people < 1000:
        raise argparse.ArgumentTypeError(f"--scale must be at least 1000 people, not {people}")
    return people


async def run(args: argparse.Namespace, bootstrap: str, server_url: str, sizes: Sizes) -> dict:
    names = [name for name in SCENARIOS if name in (args.only or SCENARIOS)]
    results: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "smoke": sizes.smoke,
                     "sizes": asdict(sizes), "argv": sys.argv[1:], "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="bench-run-") as directory:
        async with contextlib.AsyncExitStack() as stack:
            ctx = Context(bootstrap, server_url, sizes, stack, Path(directory))
            if sizes.smoke and PLATFORM_SCENARIOS & set(names):
                ctx.prestart_platform()
            results["environment"] = await _report.environment(server_url)
            try:
                await ctx.baseline("http")
                await ctx.baseline("kafka")
            except Exception as exc:  # noqa: BLE001 - reported, and the scenarios that need them fail too
                results["baseline_error"] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()

            async def one(name: str) -> dict:
                print(f"[{datetime.now(UTC):%H:%M:%S}] {name} …", flush=True)
                started = time.perf_counter()
                try:
                    figures = await SCENARIOS[name](ctx)
                    figures["wall_s"] = round(time.perf_counter() - started, 1)
                except (Exception, SystemExit) as exc:  # noqa: BLE001 - one failed scenario must not hide the rest
                    traceback.print_exc()
                    figures = {"error": f"{type(exc).__name__}: {exc}"[:2000],
                               "wall_s": round(time.perf_counter() - started, 1)}
                print(f"  {name}: {json.dumps(figures, ensure_ascii=False, default=str)[:800]}", flush=True)
                return figures

            # One after another even in a smoke run: the services' Alembic migrations share
            # process-wide state, and two apps starting side by side in one process collide.
            for name in names:
                results["scenarios"][name] = await one(name)
            results["baselines"] = ctx.baselines
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every scenario scaled down to seconds; no timing asserted")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), metavar="NAME",
                        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}")
    parser.add_argument("--scale", type=parse_scale, default=CITY_OF_10M,
                        help="people in the city (mass-screening members, travel records, KPI read models); "
                             "default 10M, the goal's size")
    parser.add_argument("--kafka", help="HOST:PORT of a running broker (default: start one)")
    parser.add_argument("--database-url", help="a running PostgreSQL server, postgresql://… (default: start one)")
    parser.add_argument("--json", type=Path, help="write the figures here (default: test-artifacts/bench/<run>.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md",
                        help="the markdown document to write the table into (default: docs/PERFORMANCE.md)")
    args = parser.parse_args(argv)
    sizes = Sizes.smoke_run() if args.smoke else Sizes.full_run(args.scale)
    with _components.kafka(args.kafka.removeprefix("kafka://") if args.kafka else None) as bootstrap, \
            _components.postgres(args.database_url) as server_url:
        results = asyncio.run(run(args, bootstrap, server_url, sizes))
    stamp = results["started"].replace(":", "").replace("-", "")
    path = args.json or ROOT / "test-artifacts" / "bench" / f"{stamp}-{'smoke' if sizes.smoke else sizes.people}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    _report.write_document(args.out, results)
    failed = [name for name, figures in results["scenarios"].items() if "error" in figures]
    print(f"figures: {path}\ntable: {args.out}" + (f"\nFAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed or "baseline_error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
