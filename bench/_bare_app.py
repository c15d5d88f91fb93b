"""The bare-endpoint baseline: a trivial Starlette app under uvicorn, configured as `fangkong serve`
runs a service (uvloop, uvicorn's default HTTP parser), so the gap to a service is the service's own.

    .venv/bin/python bench/_bare_app.py --port 8123
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def echo(request: Request) -> JSONResponse:
    body = await request.json()  # parse what a service would parse, answer small
    return JSONResponse({"items": len(body.get("items", []))})


app = Starlette(routes=[Route("/ping", ping), Route("/echo", echo, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] is pinned
        asyncio.run(server.serve())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve())


if __name__ == "__main__":
    main()
