"""Pure rules of the dashboard: the metric catalogue, the four KPIs, days in
China time, region prefixes as index ranges, labels (zh-CN first), webhook
signatures and retry backoff, spreadsheet cell neutralisation. No IO here."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum

from fangkong_common import clock

# China has one time zone and no daylight saving: a fixed offset is exact and
# needs no tz database. A "day" on the dashboard is a day in Beijing time.
CHINA_TZ = timezone(timedelta(hours=8), "CST")


def local_day(moment: datetime) -> date:
    return moment.astimezone(CHINA_TZ).date()


def today_local(now: datetime | None = None) -> date:
    return local_day(now or clock.now())


def cutoff_moment(day: date, hour: int) -> datetime:
    """When the daily report for ``day`` is due (``hour`` o'clock Beijing time that day)."""
    return datetime.combine(day, time(hour=hour), CHINA_TZ)


# --- regions ----------------------------------------------------------------


def region_level(code: str) -> str:
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "city"
    return "county"


def parent_region(code: str) -> str | None:
    level = region_level(code)
    if level == "county":
        return code[:4] + "00"
    if level == "city":
        return code[:2] + "0000"
    return None


def child_region(code: str, under: str | None) -> str | None:
    """The direct child of ``under`` that ``code`` rolls up into (for drill-down)."""
    if under is None:
        return code[:2] + "0000"
    level = region_level(under)
    if level == "province":
        return code[:4] + "00" if code[:2] == under[:2] else None
    if level == "city":
        return code if code[:4] == under[:4] else None
    return None


# --- metrics ------------------------------------------------------------------


class Kind(StrEnum):
    flow = "flow"
    """Counted per day; a period's value is the sum of its days."""
    stock = "stock"
    """A level: stored as daily changes, its value on a day is the sum of all changes up to it."""


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    zh: str
    en: str
    section: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("returnees", Kind.flow, "返回人员登记", "returnees registered", "people"),
    Metric("returnees_managed", Kind.flow, "返回人员纳入管理", "returnees under management", "people"),
    Metric("risk_flagged", Kind.flow, "中高风险地区旅居人员", "people flagged from risk areas", "people"),
    Metric("contacts", Kind.flow, "密接/次密接", "contacts identified", "people"),
    Metric("fever_alerts", Kind.flow, "卡点发热预警", "checkpoint fever alerts", "people"),
    Metric("quarantine_ordered", Kind.flow, "隔离管控令", "quarantine orders", "quarantine"),
    Metric("isolation_required", Kind.stock, "应集中隔离人数", "people to be held at a site", "quarantine"),
    Metric("isolation_admitted", Kind.stock, "已集中隔离人数", "people held at a site", "quarantine"),
    Metric("in_quarantine", Kind.stock, "在管隔离人数", "people in quarantine", "quarantine"),
    Metric("released", Kind.flow, "解除隔离", "releases", "quarantine"),
    Metric("admissions", Kind.flow, "入院/入点", "admissions", "quarantine"),
    Metric("tests_due", Kind.flow, "应检人次", "tests due", "testing"),
    Metric("tests_due_tested", Kind.flow, "应检已检人次", "tests due and taken", "testing"),
    Metric("tubes_collected", Kind.flow, "采样管数", "tubes collected", "testing"),
    Metric("people_swabbed", Kind.flow, "采样人次", "people swabbed", "testing"),
    Metric("tubes_resulted", Kind.flow, "出结果管数", "tubes resulted", "testing"),
    Metric("tube_backlog", Kind.stock, "待检积压管数", "tubes awaiting a result", "testing"),
    Metric("pools_positive", Kind.flow, "混管阳性", "positive pools", "testing"),
    Metric("testing_alerts", Kind.flow, "检测能力预警", "testing capacity alerts", "testing"),
    Metric("positives", Kind.flow, "阳性人员", "positive people", "cases"),
    Metric("positives_admitted", Kind.flow, "阳性人员已收治", "positives admitted", "cases"),
    Metric("cases", Kind.flow, "病例（按来源地）", "cases (by origin)", "cases"),
    Metric("unclassified", Kind.stock, "阳性未分类", "positives not yet classified", "cases"),
    Metric("vaccinations", Kind.flow, "疫苗接种剂次", "vaccination doses", "vaccination"),
    Metric("vaccinated_people", Kind.flow, "接种第一剂人数", "people with a first dose", "vaccination"),
    Metric("gatherings", Kind.flow, "聚集性活动备案", "gatherings filed", "gatherings"),
)}

SECTIONS: dict[str, tuple[str, str]] = {
    "kpis": ("四应四尽", "The four coverages"),
    "people": ("重点人员", "Key people"),
    "quarantine": ("隔离管控", "Quarantine"),
    "testing": ("核酸检测", "Testing"),
    "cases": ("病例", "Cases"),
    "vaccination": ("疫苗接种", "Vaccination"),
    "gatherings": ("聚集性活动", "Gatherings"),
    "sites": ("隔离点/医院床位", "Sites and beds"),
}

DIMENSION_LABELS: dict[str, tuple[str, str]] = {
    "inbound_international": ("境外返回", "from abroad"),
    "inbound_port_completed_elsewhere": ("外省口岸隔离期满", "port quarantine done elsewhere"),
    "domestic_key_region": ("重点地区来返", "from a key region"),
    "domestic_other": ("其他省外来返", "other out-of-province"),
    "local": ("省内", "within the province"),
    "medium": ("中风险", "medium risk"),
    "high": ("高风险", "high risk"),
    "1": ("密接", "close contact"),
    "2": ("次密接", "secondary contact"),
    "confirmed": ("确诊", "confirmed"),
    "asymptomatic": ("无症状", "asymptomatic"),
    "completed": ("期满解除", "completed"),
    "transferred_to_hospital": ("转院", "transferred to hospital"),
    "cancelled": ("撤销", "cancelled"),
    "centralized": ("集中隔离", "centralized"),
    "home": ("居家隔离", "home"),
    "monitoring": ("健康监测", "monitoring"),
    "hospital": ("医院", "hospital"),
    "hotel": ("隔离酒店", "hotel"),
    "fangcang": ("方舱", "fangcang"),
    "port": ("口岸", "port"),
    "municipal_site": ("市级隔离点", "municipal site"),
    "designated_hospital": ("定点医院", "designated hospital"),
    "backlog": ("积压", "backlog"),
    "reagent_low": ("试剂不足", "reagent low"),
    "turnaround": ("时效超时", "turnaround"),
    "filed": ("已备案", "filed"),
    "3-11": ("3-11岁", "aged 3-11"),
    "12-14": ("12-14岁", "aged 12-14"),
    "15-17": ("15-17岁", "aged 15-17"),
    "18+": ("18岁以上", "aged 18+"),
    "approved": ("已批准", "approved"),
    "refused": ("不予批准", "refused"),
}


def label(name: str, lang: str) -> str:
    metric = METRICS.get(name)
    if metric is not None:
        return metric.en if lang == "en" else metric.zh
    if name in SECTIONS:
        zh, en = SECTIONS[name]
        return en if lang == "en" else zh
    return name


def dimension_label(dimension: str, lang: str) -> str:
    """Dimensions like 'centralized/hotel' label each part."""
    parts = []
    for part in dimension.split("/"):
        zh, en = DIMENSION_LABELS.get(part, (part, part))
        parts.append(en if lang == "en" else zh)
    return "/".join(parts)


# --- the four KPIs (四应四尽) -----------------------------------------------------


@dataclass(frozen=True)
class KpiDef:
    name: str
    zh: str
    en: str
    numerator: str
    denominator: str
    per_day: bool
    """True: the numbers of that day (tests due on the day); False: levels or totals up to it."""
    exclude_dimensions: tuple[str, ...] = ()


KPIS: tuple[KpiDef, ...] = (
    KpiDef("tested", "应检尽检", "tested", "tests_due_tested", "tests_due", per_day=True),
    KpiDef("isolated", "应隔尽隔", "isolated", "isolation_admitted", "isolation_required", per_day=False),
    KpiDef("treated", "应救尽救", "treated", "positives_admitted", "positives", per_day=False),
    # Travel within the province plans nothing: those returnees are not "to be managed".
    KpiDef("managed", "应管尽管", "managed", "returnees_managed", "returnees", per_day=False,
           exclude_dimensions=("local",)),
)


def ratio(numerator: int, denominator: int) -> float | None:
    if denominator <= 0:
        return None
    return round(numerator / denominator, 4)


AGE_GROUPS = ("3-11", "12-14", "15-17", "18+")


# --- quarantine ---------------------------------------------------------------

SITE_KINDS_NEEDING_A_BED = ("centralized", "hospital")
TREATMENT_SITES = ("hospital", "fangcang")


def needs_site(first_stage_kind: str) -> bool:
    """Orders starting centralized or in hospital wait for a bed: the 应隔尽隔 denominator."""
    return first_stage_kind in SITE_KINDS_NEEDING_A_BED


# --- webhooks -----------------------------------------------------------------

SIGNATURE_HEADER = "X-Fangkong-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>" (the timestamp stops replays of old deliveries)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = sign(secret, int(parts["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


def backoff_seconds(attempts: int, base: float = 2.0, cap: float = 3600.0) -> float:
    """Delay before the next try after ``attempts`` failed ones: base·2^(n-1), capped."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


# --- exports ------------------------------------------------------------------

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """A text cell a spreadsheet would run as a formula gets a leading quote (CSV/formula injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
