"""HTTP API of the dashboard service, under /dashboard, and the command screen at /.

Every endpoint needs a token; a caller sees its regions and what lies under them
(403 outside). Nothing here returns a person: counts only.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator

from fangkong_common.auth import Principal, Role, TokenError, decode_token, issue_token, require_region
from fangkong_common.db import DbSession
from fangkong_common.errors import Invalid, Unavailable
from fangkong_common.ratelimit import check_login_rate

from dashboard import outcomes, queries, reports, service, stream
from dashboard.domain.rules import METRICS, today_local
from dashboard.schemas import (LoginIn, RectificationIn, RectificationPatch, UnitIn, UnitReportIn,
                               VaccinationTargetIn, WebhookIn)

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
screen_router = APIRouter(tags=["screen"])

_bearer = HTTPBearer(auto_error=False)
READERS = {Role.admin, Role.commander, Role.viewer, Role.integration}
LEDGER = {Role.admin, Role.commander}
HOOKS = {Role.admin, Role.commander, Role.integration}
MAX_SERIES_DAYS = 366


def day_range(from_: date | None, to: date | None) -> tuple[date, date]:
    """The days a series or interval query covers: to defaults to today, from to 13 days before."""
    day_to = to or today_local()
    day_from = from_ or day_to - timedelta(days=13)
    if day_from > day_to:
        raise Invalid(["query", "from"], "from must not be after to (起始日期不能晚于结束日期)")
    if (day_to - day_from).days >= MAX_SERIES_DAYS:
        raise Invalid(["query", "from"], f"at most {MAX_SERIES_DAYS} days per request (每次最多 {MAX_SERIES_DAYS} 天)")
    return day_from, day_to
STATIC = Path(__file__).parent / "static"


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                 token: Annotated[str | None, Query(description="for EventSource and download links, "
                                                              "which cannot set headers")] = None) -> Principal:
    raw = credentials.credentials if credentials is not None and credentials.scheme.lower() == "bearer" else token
    if not raw:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    settings = request.app.state.settings
    try:
        principal = decode_token(raw, settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer,
                                 audience=settings.jwt_audience)
    except TokenError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {exc}",
                            headers={"WWW-Authenticate": "Bearer"}) from exc
    request.state.principal = principal
    return principal


def roles(allowed: set[Role]):
    async def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role.value} may not do this; needs "
                                                           f"one of {sorted(r.value for r in allowed)}")
        return principal
    return check


Reader = Annotated[Principal, Depends(roles(READERS))]
Ledger = Annotated[Principal, Depends(roles(LEDGER))]
Hooks = Annotated[Principal, Depends(roles(HOOKS))]
AnyCaller = Annotated[Principal, Depends(caller)]
RegionQ = Annotated[str | None, Query(pattern=r"^[0-9]{6}$", description="GB/T 2260 code; default: your region")]
def _platform_day(day: date) -> date:
    # Ranges step back from a day (14 days of series): year 1 underflowed into a 500.
    if not 2000 <= day.year <= 2100:
        raise ValueError(f"日期须在2000至2100年之间 (a day in 2000-2100, got {day})")
    return day


Day = Annotated[date, AfterValidator(_platform_day)]
DateQ = Annotated[Day | None, Query(description="a day in Beijing time; default: today")]
LangQ = Annotated[Literal["zh", "zh-CN", "en"], Query(description="zh-CN by default, en for English")]


def scope(principal: Principal, region_code: str | None) -> str | None:
    """The region asked for (403 outside the caller's), or the caller's own; None = the whole country."""
    if region_code is None:
        if principal.sees_everything:
            return None
        if not principal.regions:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your token covers no region")
        return principal.regions[0]
    require_region(principal, region_code)
    return region_code


def lang_of(lang: str) -> str:
    return "en" if lang == "en" else "zh"


# --- KPIs, metrics, drill-down, sites -------------------------------------------------


@router.get("/kpis")
async def get_kpis(session: DbSession, principal: Reader, region_code: RegionQ = None, date: DateQ = None,
                   lang: LangQ = "zh") -> dict:
    region = scope(principal, region_code)
    day = date or today_local()
    return {"region_code": region, "date": day.isoformat(),
            "kpis": await queries.kpis(session, region, day, lang_of(lang)),
            "headline": await queries.headline(session, region, day)}


@router.get("/metrics")
async def get_metrics(session: DbSession, principal: Reader, region_code: RegionQ = None,
                      from_: Annotated[Day | None, Query(alias="from")] = None,
                      to: Annotated[Day | None, Query()] = None,
                      names: Annotated[str | None, Query(description="comma-separated metric names; default all")] = None,
                      lang: LangQ = "zh") -> dict:
    region = scope(principal, region_code)
    day_from, day_to = day_range(from_, to)
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else list(METRICS)
    unknown = [n for n in wanted if n not in METRICS]
    if unknown:
        raise Invalid(["query", "names"], f"unknown metrics {unknown}; known: {list(METRICS)}")
    return {"region_code": region, "from": day_from.isoformat(), "to": day_to.isoformat(),
            "series": await queries.series(session, region, day_from, day_to, wanted, lang_of(lang))}


@router.get("/outcomes")
async def get_outcomes(session: DbSession, principal: Reader, region_code: RegionQ = None,
                       from_: Annotated[Day | None, Query(alias="from", description="first day (Beijing time); "
                                                            "default: 13 days before to")] = None,
                       to: Annotated[Day | None, Query(description="last day; default: today")] = None) -> dict:
    """四早 outcome intervals (result → bed, case → contacts under order, collection → result,
    positive → classified, returnee registered → first test): count, nearest-rank median and p90,
    max in seconds, for the range and per day, with what is still waiting as of ``as_of``."""
    region = scope(principal, region_code)
    day_from, day_to = day_range(from_, to)
    return await outcomes.outcomes(session, region, day_from, day_to)


@router.get("/regions")
async def get_regions(session: DbSession, principal: Reader, region_code: RegionQ = None, date: DateQ = None) -> dict:
    """Drill-down: the next level under the region, with key levels."""
    region = scope(principal, region_code)
    day = date or today_local()
    return {"region_code": region, "date": day.isoformat(),
            "children": await queries.drilldown(session, region, day)}


@router.get("/sites")
async def get_sites(session: DbSession, principal: Reader, region_code: RegionQ = None) -> dict:
    region = scope(principal, region_code)
    return {"region_code": region, "sites": await queries.sites(session, region)}


@router.put("/vaccination-targets")
async def set_vaccination_target(session: DbSession, principal: Ledger, body: VaccinationTargetIn) -> dict:
    return await service.set_vaccination_target(session, principal, body)


@router.get("/vaccination")
async def vaccination(session: DbSession, principal: Reader, region_code: RegionQ = None, date: DateQ = None,
                      lang: LangQ = "zh") -> dict:
    """First-dose people by age group against the targets (the sum of the targets set under the region)."""
    region = scope(principal, region_code)
    day = date or today_local()
    return {"region_code": region, "date": day.isoformat(),
            "age_groups": await service.vaccination_progress(session, region, day, lang_of(lang))}


# --- daily report and exports ------------------------------------------------------------


def _download(content: bytes, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/reports/daily", responses={200: {"content": {"application/json": {}, XLSX: {}, "application/pdf": {}},
                                                    "description": "the report as JSON, XLSX or PDF (format)"}})
async def daily_report(request: Request, session: DbSession, principal: Reader, region_code: RegionQ = None,
                       date: DateQ = None, format: Literal["json", "xlsx", "pdf"] = "json",
                       lang: LangQ = "zh"):
    region = scope(principal, region_code)
    day = date or today_local()
    settings = request.app.state.settings
    report = await reports.daily(session, region, day, lang_of(lang), settings.report_cutoff_hour)
    stem = f"daily-report-{region or 'all'}-{day.isoformat()}"
    if format == "xlsx":
        return _download(reports.to_xlsx(report), XLSX, stem + ".xlsx")
    if format == "pdf":
        try:
            pdf = reports.to_pdf(report, list(settings.cjk_font_paths))
        except reports.FontMissing as exc:
            raise Unavailable(str(exc)) from exc
        return _download(pdf, "application/pdf", stem + ".pdf")
    return report


@router.get("/exports/{table}", response_class=Response,
            responses={200: {"content": {"text/csv": {}, XLSX: {}}, "description": "CSV (UTF-8 with BOM) or XLSX"}})
async def export(request: Request, session: DbSession, principal: Reader,
                 table: Literal["kpis", "metrics", "series", "regions", "sites", "vaccination", "missing_units",
                                "rectifications", "unit_reports", "outcomes"],
                 format: Literal["csv", "xlsx"] = "csv", region_code: RegionQ = None, date: DateQ = None,
                 lang: LangQ = "zh") -> Response:
    region = scope(principal, region_code)
    day = date or today_local()
    header, rows = await reports.export_table(session, table, region, day, lang_of(lang),
                                              request.app.state.settings.report_cutoff_hour)
    stem = f"{table}-{region or 'all'}-{day.isoformat()}"
    if format == "xlsx":
        return _download(reports.table_to_xlsx(table, header, rows), XLSX, stem + ".xlsx")
    return _download(reports.to_csv(header, rows), "text/csv; charset=utf-8", stem + ".csv")


# --- reporting units, daily and zero reports -----------------------------------------------


@router.post("/units", status_code=201)
async def register_unit(session: DbSession, principal: Ledger, body: UnitIn) -> dict:
    return await service.register_unit(session, principal, body)


@router.get("/units")
async def list_units(session: DbSession, principal: Reader, region_code: RegionQ = None) -> dict:
    return {"units": await service.list_units(session, scope(principal, region_code))}


@router.post("/unit-reports", status_code=201)
async def file_unit_report(request: Request, session: DbSession, principal: AnyCaller, body: UnitReportIn) -> dict:
    """A unit files its daily report, or an explicit zero report (zero=true); filing again replaces it."""
    return await service.file_report(session, principal, body, request.app.state.settings.report_cutoff_hour)


@router.get("/unit-reports")
async def list_unit_reports(session: DbSession, principal: Reader, region_code: RegionQ = None,
                            date: DateQ = None) -> dict:
    region = scope(principal, region_code)
    day = date or today_local()
    return {"date": day.isoformat(), "reports": await service.reports_of_day(session, region, day)}


@router.get("/unit-reports/missing")
async def missing_unit_reports(request: Request, session: DbSession, principal: Reader, region_code: RegionQ = None,
                               date: DateQ = None) -> dict:
    region = scope(principal, region_code)
    return await service.missing_reports(session, region, date or today_local(),
                                         request.app.state.settings.report_cutoff_hour)


@router.post("/unit-reports/missing/rectifications", status_code=201)
async def file_missing_as_findings(request: Request, session: DbSession, principal: Ledger,
                                   region_code: RegionQ = None, date: DateQ = None,
                                   deadline_days: Annotated[int, Query(ge=0, le=30)] = 1) -> dict:
    """Each unit that missed the day's report becomes a rectification (idempotent per unit and day)."""
    region = scope(principal, region_code)
    day = date or today_local()
    created = await service.file_missed_report_findings(session, principal, region, day,
                                                        request.app.state.settings.report_cutoff_hour,
                                                        today_local() + timedelta(days=deadline_days))
    return {"created": created}


# --- rectification ledger -------------------------------------------------------------------


@router.post("/rectifications", status_code=201)
async def create_rectification(session: DbSession, principal: Ledger, body: RectificationIn) -> dict:
    return await service.create_rectification(session, principal, body)


@router.get("/rectifications")
async def list_rectifications(session: DbSession, principal: Reader, region_code: RegionQ = None,
                              status_: Annotated[Literal["open", "in_progress", "done"] | None,
                                                 Query(alias="status")] = None,
                              overdue: bool | None = None) -> dict:
    region = scope(principal, region_code)
    return {"rectifications": await service.list_rectifications(session, region, status_, overdue)}


@router.patch("/rectifications/{rectification_id}")
async def update_rectification(session: DbSession, principal: Ledger, rectification_id: str,
                               body: RectificationPatch) -> dict:
    return await service.update_rectification(session, principal, rectification_id, body)


# --- live feed ------------------------------------------------------------------------------


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
async def live_stream(request: Request, principal: Reader, region_code: RegionQ = None,
                      since: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="resume after this change id")] = None,
                      max_events: Annotated[int | None, Query(ge=1, le=10000,
                                                              description="close after this many changes "
                                                                          "(long-polling clients)")] = None
                      ) -> StreamingResponse:
    if region_code is not None:
        region = scope(principal, region_code)
    else:
        region = None  # every region of the token: rows are filtered by principal.can_see
        if not principal.sees_everything and not principal.regions:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your token covers no region")
    last_event_id = request.headers.get("last-event-id")
    if since is None and last_event_id and last_event_id.isdigit():
        since = int(last_event_id)
    return StreamingResponse(stream.events(request, principal, region, since, max_events),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- webhooks --------------------------------------------------------------------------------


@router.post("/webhooks", status_code=201)
async def register_webhook(request: Request, session: DbSession, principal: Hooks, body: WebhookIn) -> dict:
    return await service.register_webhook(session, principal, body,
                                          require_https=request.app.state.settings.env == "production")


@router.get("/webhooks")
async def list_webhooks(session: DbSession, principal: Hooks) -> dict:
    return {"webhooks": await service.list_webhooks(session, principal)}


@router.delete("/webhooks/{webhook_id}")
async def deactivate_webhook(session: DbSession, principal: Hooks, webhook_id: str) -> dict:
    return await service.deactivate_webhook(session, principal, webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(session: DbSession, principal: Hooks, webhook_id: str,
                             limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    return {"deliveries": await service.deliveries(session, principal, webhook_id, limit)}


# --- demo login (embedded / development only) ---------------------------------------------------


@router.post("/login", responses={429: {"description": "too many logins from this address for this role; "
                                                       "see Retry-After"}})
async def dev_login(request: Request, body: LoginIn) -> dict:
    """A short token for the command screen in the embedded/development mode. Never in production:
    there tokens come from `fangkong token` or the identity provider."""
    settings = request.app.state.settings
    if settings.env == "production" or not settings.dev_login:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    check_login_rate(request, body.role)
    token = issue_token(settings.jwt_secret.get_secret_value(), role=body.role, regions=[body.region_code],
                        sub=f"screen-{body.role}-{body.region_code}", ttl_seconds=settings.dev_login_ttl_seconds,
                        issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    return {"token": token, "expires_in": settings.dev_login_ttl_seconds, "role": body.role,
            "region_code": body.region_code}


# --- the command screen ------------------------------------------------------------------------

async def screen() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


for path in ("/", "/dashboard/", "/dashboard/screen"):
    screen_router.add_api_route(path, screen, methods=["GET"], include_in_schema=False)
