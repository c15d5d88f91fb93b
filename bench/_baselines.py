"""Baselines measured in the same run as the scenarios they bound: raw asyncpg COPY and batched
inserts of the mass-screening member rows, and a bare uvicorn endpoint under the same concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from _util import BENCH, drop_database, fresh_database, pct

MEMBER_TABLE = """CREATE TABLE {name} (
    barcode varchar(64) NOT NULL, person_key varchar(64) NOT NULL, round_id varchar(80) NOT NULL,
    void boolean NOT NULL DEFAULT false, PRIMARY KEY (barcode, person_key))"""
CHUNK = 100_000


def member_rows(members: int, ratio: int = 10, round_id: str = "2026-04-04") -> Iterator[list[tuple]]:
    """The (barcode, person_key, round_id) rows mass screening stores for ``members`` people, in
    chunks: the shape of testing's tube_members (a 64-hex person key per member, ``ratio`` per tube)."""
    chunk: list[tuple] = []
    for n in range(members):
        chunk.append((f"B{n // ratio:09d}", hashlib.sha256(f"member-{n}".encode()).hexdigest(), round_id))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def postgres_rows(server_url: str, members: int, batch: int = 1000) -> dict:
    """COPY, then batched INSERTs (executemany of ``batch`` rows per transaction), of the same rows
    into a table shaped like tube_members, with its primary key, on a fresh database."""
    import asyncpg

    dsn = await fresh_database(server_url, "bench_rows")
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        await conn.execute(MEMBER_TABLE.format(name="copied"))
        await conn.execute(MEMBER_TABLE.format(name="inserted"))
        copy_seconds = insert_seconds = 0.0
        for chunk in member_rows(members):
            started = time.perf_counter()
            await conn.copy_records_to_table("copied", records=chunk, columns=["barcode", "person_key", "round_id"])
            copy_seconds += time.perf_counter() - started
        for chunk in member_rows(members):
            started = time.perf_counter()
            for start in range(0, len(chunk), batch):
                async with conn.transaction():
                    await conn.executemany("INSERT INTO inserted (barcode, person_key, round_id) VALUES ($1, $2, $3)",
                                           chunk[start:start + batch])
            insert_seconds += time.perf_counter() - started
        stored = await conn.fetchval("SELECT (SELECT count(*) FROM copied) + (SELECT count(*) FROM inserted)")
    finally:
        await conn.close()
        await drop_database(server_url, dsn)
    if stored != 2 * members:
        raise SystemExit(f"baseline stored {stored} rows, expected {2 * members}")
    return {"rows": members, "postgres": version,
            "copy_seconds": round(copy_seconds, 3), "copy_rows_per_s": round(members / copy_seconds),
            "insert_batch": batch, "insert_seconds": round(insert_seconds, 3),
            "insert_rows_per_s": round(members / insert_seconds)}


async def bare_endpoint(requests: int, clients: int) -> dict:
    """GET on a trivial Starlette app under uvicorn (its own process, as a service runs), ``clients``
    concurrent httpx clients: the most one worker process serves here, and its latency floor."""
    from tests.multiprocess import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, str(BENCH / "_bare_app.py"), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/ping")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bare endpoint did not start: {process.stderr.read().decode()[-2000:]}")
                await asyncio.sleep(0.1)
            for _ in range(50):  # warm up
                (await client.get("/ping")).raise_for_status()
            latencies: list[float] = []
            remaining = [requests]

            async def worker() -> None:
                while remaining[0] > 0:
                    remaining[0] -= 1
                    started = time.perf_counter()
                    (await client.get("/ping")).raise_for_status()
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            seconds = time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    return {"requests": requests, "clients": clients, "requests_per_s": round(requests / seconds),
            "p50_ms": round(1000 * pct(latencies, 0.5), 2), "p99_ms": round(1000 * pct(latencies, 0.99), 2)}
