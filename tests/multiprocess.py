"""The multi-process platform: each service its own `fangkong serve` process, on real
Kafka and a PostgreSQL database of its own, as the compose deployment runs them
(without the gateway: clients are given each service's URL)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fangkong_cli.services import SERVICE_NAMES
from fangkong_common.auth import Role, issue_token

FANGKONG = Path(sys.executable).parent / "fangkong"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([str(FANGKONG), "serve", self.name, "--port", str(self.port)],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def wait_stopped(self, timeout: float = 30.0) -> int | None:
        """The exit code once the process ended (killed after ``timeout``); no signal sent."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass
class MultiProcessPlatform:
    kafka_url: str  # kafka://host:port
    database_url: str  # postgresql+asyncpg://…/<name>: each service gets <name>_<service>
    directory: Path
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    person_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    namespace: str = field(default_factory=lambda: f"mp{uuid.uuid4().hex[:10]}")
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    # More processes of a service (a second consumer in its groups), stopped with the rest.
    replicas: list[ServiceProcess] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
        env.update({
            "FANGKONG_BUS_URL": f"{self.kafka_url}?namespace={self.namespace}",
            "FANGKONG_JWT_SECRET": self.jwt_secret,
            "FANGKONG_PERSON_KEY_SECRET": self.person_key_secret,
            "FANGKONG_DATA_DIR": str(self.directory),
            "FANGKONG_AUTO_MIGRATE": "false",
            "FANGKONG_LOG_JSON": "true",
        })
        return env

    def start(self) -> None:
        env = self._env()
        migrated = subprocess.run([str(FANGKONG), "migrate", "--database-url", self.database_url],
                                  env=env, capture_output=True, text=True, timeout=180)
        if migrated.returncode != 0:
            raise RuntimeError(f"fangkong migrate failed:\n{migrated.stderr[-4000:]}")
        base = self.database_url.rsplit("/", 1)
        for name in SERVICE_NAMES:
            service_env = dict(env, FANGKONG_DATABASE_URL=f"{base[0]}/{base[1]}_{name}")
            self.services[name] = ServiceProcess(name, free_port(), service_env, self.directory / f"{name}.log")
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_ready()

    def stop(self) -> dict[str, int | None]:
        # SIGTERM to every process first, so they shut down side by side rather than one after another.
        everyone = [*self.replicas, *self.services.values()]
        for service in everyone:
            if service.process is not None and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        codes = {id(service): service.wait_stopped() for service in everyone}
        return {name: codes[id(service)] for name, service in self.services.items()}

    def restart(self, name: str, sig: int = signal.SIGTERM) -> int | None:
        """Stop one service (SIGKILL: as a crash) and start it again on its port; its exit code."""
        service = self.services[name]
        code = service.stop(sig)
        service.start()
        service.wait_ready()
        return code

    def add_replica(self, name: str) -> ServiceProcess:
        """One more process of ``name`` on the same database and bus (another port)."""
        original = self.services[name]
        replica = ServiceProcess(name, free_port(), dict(original.env),
                                 self.directory / f"{name}.{len(self.replicas) + 2}.log")
        self.replicas.append(replica)
        replica.start()
        replica.wait_ready()
        return replica

    def url(self, service: str) -> str:
        return self.services[service].url

    def service_url_options(self) -> list[str]:
        """`--service-url name=URL` for each service (the simulator's and other clients')."""
        options: list[str] = []
        for name, service in self.services.items():
            options += ["--service-url", f"{name}={service.url}"]
        return options

    def token(self, role: Role = Role.admin, **scope) -> str:
        return issue_token(self.jwt_secret, role=role, **scope)

    def headers(self, role: Role = Role.admin, **scope) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **scope)}"}

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{service.log_tail(2000)}" for name, service in self.services.items())
