"""``/simulations``: what-if comparisons asked for from the command screen (embedded platform).

A comparison runs as ``fangkong simulate --what-if ... --json-out`` in a subprocess (its runs
on throwaway platforms of their own, never on this one); the file it rewrites after each
run is the status. One at a time (409 while one runs); admin or commander only.

- ``GET  /simulations/options``          scenarios, their levers, limits, whether one is running
- ``POST /simulations``                  start: {scenario, levers: ["beds=+50%", ...], seed, scale, combined}
- ``GET  /simulations/current?lang=``    status, progress, and the table once runs are done
- ``GET  /simulations/{id}?lang=``       the same for one id
- ``GET  /simulations/{id}/brief?format=xlsx|pdf&lang=``   the brief
- ``DELETE /simulations/{id}``           stop it
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fangkong_common.auth import Principal, Role, require_roles
from fangkong_common.settings import CommonSettings
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from fangkong_cli.simulate.levers import (
    APPLICABLE,
    SPECS,
    LeverError,
    check_applicable,
    parse_levers,
)
from fangkong_cli.simulate.runner import SCENARIOS

# What the screen may ask for: a comparison is several full runs; the terminal has no such limits.
MAX_SCALE = 1.0
MAX_LEVERS = 6
Commanders = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander))]


class ComparisonIn(BaseModel):
    scenario: Literal["school-outbreak", "spring-festival", "mass-screening"]
    levers: list[str] = Field(min_length=1, max_length=MAX_LEVERS, description='e.g. ["beds=+50%", "pool-ratio=20"]')
    seed: int = Field(1, ge=0, le=2**31 - 1)
    scale: float = Field(0.05, gt=0, le=MAX_SCALE)
    people: int = Field(100_000, ge=10, le=1_000_000, description="mass-screening only")
    combined: bool = False


@dataclass
class Job:
    id: str
    request: ComparisonIn
    directory: Path
    process: subprocess.Popen
    requested_by: str
    stopped: bool = False
    waiter: asyncio.Future | None = field(default=None, repr=False)

    @property
    def result_path(self) -> Path:
        return self.directory / "comparison.json"

    def document(self) -> dict | None:
        try:
            return json.loads(self.result_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def state(self) -> str:
        code = self.process.poll()
        if code is None:
            return "running"
        if self.stopped:
            return "stopped"
        document = self.document()
        return "done" if code == 0 and document and document.get("status") == "done" else "failed"


class Simulations:
    """The one comparison at a time of this platform, and the ones before it (this process's life)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "simulations"
        self.jobs: dict[str, Job] = {}
        self.current: Job | None = None
        self.lock = asyncio.Lock()

    def busy(self) -> bool:
        return self.current is not None and self.current.process.poll() is None

    async def start(self, body: ComparisonIn, principal: Principal) -> Job:
        try:
            levers = parse_levers(body.levers, combined=body.combined)
            check_applicable(body.scenario, levers)
        except LeverError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                                {"field": "levers", "message": exc.zh, "message_en": exc.en}) from None
        async with self.lock:
            if self.busy():
                raise HTTPException(status.HTTP_409_CONFLICT,
                                    {"message": "已有一次推演对比在运行，请等它结束或停止它",
                                     "message_en": "a comparison is already running: wait for it or stop it",
                                     "id": self.current.id})
            job_id = uuid.uuid4().hex[:12]
            directory = self.root / job_id
            directory.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "fangkong_cli.main", "simulate", "--scenario", body.scenario,
                       "--seed", str(body.seed), "--scale", repr(body.scale), "--people", str(body.people),
                       "--no-progress", "--json-out", str(directory / "comparison.json")]
            for lever in levers:
                command += ["--what-if", lever.text]
            if body.combined:
                command.append("--combined")
            env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
            env["COLUMNS"] = "200"
            log = (directory / "simulate.log").open("wb")
            # Its own process group: stopping it stops the throwaway platforms it started too.
            # Popen returns at once; the process is waited for in a thread.
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,  # noqa: ASYNC220
                                       start_new_session=True)
            log.close()
            job = Job(job_id, body, directory, process, principal.sub)
            job.waiter = asyncio.create_task(asyncio.to_thread(process.wait))
            self.jobs[job_id] = job
            self.current = job
            return job

    async def stop(self, job: Job) -> None:
        if job.process.poll() is not None:
            return
        job.stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.process.pid, signal.SIGTERM)
        try:
            # It stops its throwaway platforms on the way out; they got the signal too (same group).
            await asyncio.wait_for(asyncio.shield(job.waiter), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.process.pid, signal.SIGKILL)
            await job.waiter

    async def aclose(self) -> None:
        for job in list(self.jobs.values()):
            await self.stop(job)

    def view(self, job: Job, lang: str) -> dict:
        from fangkong_cli.simulate.whatif_table import as_json

        document = job.document() or {}
        state = job.state()
        out = {"id": job.id, "status": state, "request": job.request.model_dump(), "requested_by": job.requested_by,
               "runs_total": document.get("runs_total"), "runs_done": len(document.get("runs", [])),
               "current": document.get("current"), "error": document.get("error"), "table": None}
        if state == "failed" and not out["error"]:
            log = job.directory / "simulate.log"
            out["error"] = log.read_text(errors="replace")[-1500:] if log.exists() else "failed"
        if document.get("runs"):
            out["table"] = as_json(document, lang)
        return out


def router(simulations: Simulations) -> APIRouter:
    api = APIRouter(prefix="/simulations", tags=["simulations"])

    def job_of(job_id: str) -> Job:
        job = simulations.jobs.get(job_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no comparison {job_id} (没有这次推演对比)")
        return job

    @api.get("/options")
    async def options(_: Commanders) -> dict:
        return {"scenarios": [{"name": s, "levers": list(APPLICABLE[s])} for s in SCENARIOS],
                "levers": [{"name": spec.name, "zh": spec.zh, "en": spec.en, "relative": spec.relative,
                            "absolute": spec.absolute, "choices": spec.choices} for spec in SPECS.values()],
                "max_scale": MAX_SCALE, "max_levers": MAX_LEVERS, "busy": simulations.busy(),
                "current": simulations.current.id if simulations.current else None}

    @api.post("", status_code=status.HTTP_202_ACCEPTED)
    async def start(body: ComparisonIn, principal: Commanders, lang: Literal["zh", "en"] = "zh") -> dict:
        return simulations.view(await simulations.start(body, principal), lang)

    @api.get("/current")
    async def current(_: Commanders, lang: Literal["zh", "en"] = "zh") -> dict:
        if simulations.current is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no comparison yet (尚无推演对比)")
        return simulations.view(simulations.current, lang)

    @api.get("/{job_id}")
    async def one(job_id: str, _: Commanders, lang: Literal["zh", "en"] = "zh") -> dict:
        return simulations.view(job_of(job_id), lang)

    @api.delete("/{job_id}")
    async def stop(job_id: str, _: Commanders, lang: Literal["zh", "en"] = "zh") -> dict:
        job = job_of(job_id)
        await simulations.stop(job)
        return simulations.view(job, lang)

    @api.get("/{job_id}/brief")
    async def brief(job_id: str, _: Commanders, format: Literal["xlsx", "pdf"] = "xlsx",
                    lang: Annotated[Literal["zh", "en"], Query()] = "zh") -> Response:
        from fangkong_cli.simulate import whatif_table

        job = job_of(job_id)
        document = job.document()
        if job.state() != "done" or not document:
            raise HTTPException(status.HTTP_409_CONFLICT, f"comparison {job_id} is {job.state()}, not done "
                                                          f"(推演对比尚未完成)")
        if format == "pdf":
            try:
                data = await asyncio.to_thread(whatif_table.to_pdf, document, lang)
            except Exception as exc:  # FontMissing: say which font, as the daily report does
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
            media = "application/pdf"
        else:
            data = await asyncio.to_thread(whatif_table.to_xlsx, document, lang)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        name = f"what-if-{document['scenario']}-{job_id}.{format}"
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return api


def mount(root: FastAPI, overrides: dict) -> Simulations:
    """Add ``/simulations`` to the embedded platform's own app; the caller stops it with ``aclose()``."""
    settings = CommonSettings(**overrides)
    # The auth dependency reads the app's settings (the secret and issuer of this installation).
    root.state.settings = settings
    simulations = Simulations(Path(settings.data_dir))
    root.state.simulations = simulations
    root.include_router(router(simulations))
    return simulations
