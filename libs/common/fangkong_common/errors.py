"""Errors that carry their HTTP status, and the handlers that render them."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from fangkong_common.bus.base import is_transient

log = logging.getLogger("fangkong.http")


class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: Any, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    """A 422 in FastAPI's own shape: which field, and why."""

    status_code = 422

    def __init__(self, loc: tuple[str | int, ...] | list[str | int], msg: str, *, type: str = "value_error",
                 more: list[dict] | None = None) -> None:
        errors = [{"loc": list(loc), "msg": msg, "type": type}, *(more or [])]
        super().__init__(errors)


class Unavailable(ServiceError):
    status_code = 503


def _json_safe(value: Any) -> Any:
    """NaN and ±Infinity (which Python's JSON parser lets in) as text: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input; a body with NaN made that echo unencodable and
        # the 422 a 500. Same shape, non-finite numbers as text.
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(sa_exc.DBAPIError)
    async def _database_error(_request: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        if is_transient(exc):
            # The database is down or restarting: tell clients to come back, not that they erred.
            log.warning("database unavailable", extra={"error": repr(exc.orig)})
            return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503,
                                headers={"Retry-After": "2"})
        raise exc

    @app.exception_handler(OSError)
    async def _connection_error(_request: Request, exc: OSError) -> JSONResponse:
        log.warning("dependency unavailable", extra={"error": repr(exc)})
        return JSONResponse({"detail": "service dependency unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "2"})
