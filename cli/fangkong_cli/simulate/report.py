"""The summary as the command center reads it: rich tables, zh-CN first (English with --lang en)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table

from fangkong_cli.simulate.runner import CST, Summary

LABELS = {
    "title": ("推演结果", "Simulation result"),
    "kpis": ("四应四尽", "The four KPIs"),
    "kpi": ("指标", "KPI"), "ratio": ("比例", "ratio"), "of": ("分子/分母", "numerator/denominator"),
    "situation": ("态势", "Situation"), "figure": ("项目", "figure"), "value": ("数值", "value"),
    "positives": ("累计阳性", "positives to date"),
    "unclassified": ("待分类阳性（未进入统计）", "positives not yet classified"),
    "awaiting_bed": ("阳性待床位", "positives waiting for a bed"),
    "beds": ("定点医院/方舱空床 / 总床位", "hospital & fangcang beds free / total"),
    "rooms": ("隔离房间空余 / 总数", "quarantine rooms free / total"),
    "sites_low": ("床位紧张的隔离点", "sites short of places"),
    "in_quarantine": ("在管隔离人员", "people under quarantine"),
    "contacts": ("累计密接、次密接", "close and secondary contacts"),
    "returnees": ("返乡人员", "returnees"),
    "backlog": ("待检样本管（积压）", "tubes waiting for a lab (backlog)"),
    "backlog_end": ("预测3天后积压", "backlog forecast in 3 days"),
    "lab_capacity": ("实验室日检测能力（管）", "lab capacity, tubes/day"),
    "advice": ("检测能力建议", "testing advice"),
    "simulator": ("推演器", "Simulator"),
    "scenario": ("场景", "scenario"), "seed": ("随机种子", "seed"), "span": ("模拟时段（北京时间）", "simulated span (Beijing)"),
    "clock": ("平台时钟", "platform clock"), "clock_on": ("已随推演拨动", "moved with the simulation"),
    "clock_off": ("未能拨动（按实际时间）", "not movable (wall clock)"),
    "requests": ("HTTP 请求", "HTTP requests"), "records": ("发送记录数", "records sent"),
    "wall": ("耗时（秒）", "wall time (s)"),
    "phases": ("耗时分布（秒）", "wall time by phase (s)"), "events": ("平台产生事件", "events the platform published"),
    "eps": ("事件/秒", "events/s"),
    "events_note": ("事件=平台总线发布数 (fangkong_bus_published_total 增量)",
                    "events = fangkong_bus_published_total delta over the run"),
    "did": ("推演器所做", "What the simulator did"),
}
FIGURES = {
    "positives": ("阳性结果（单管）", "positive single tubes posted"),
    "contacts": ("登记密接/次密接", "contacts registered"),
    "classified": ("已分类病例", "cases classified"),
    "tubes": ("采样管", "tubes swabbed"),
    "results": ("检测结果", "results posted"),
    "students": ("高校学生", "students"),
    "labs_tubes_per_day": ("实验室日能力", "lab tubes/day"),
    "backlog_left": ("未检样本管（推演器队列）", "tubes left untested (simulator queue)"),
    "returnees": ("返乡人员", "returnees"),
    "risk_flagged_expected": ("新风险区应锁定人数", "people the new risk area should flag"),
    "risk_flagged_platform": ("平台锁定人数", "people the platform flagged"),
    "people": ("受检人口", "people screened"),
    "returnees_inbound_international": ("境外返回", "inbound from abroad"),
    "returnees_inbound_port_completed_elsewhere": ("外省口岸隔离期满返回", "port quarantine done in another province"),
    "returnees_domestic_key_region": ("重点地区来返", "from key regions"),
    "returnees_domestic_other": ("其他省外返回", "other out-of-province"),
    "returnees_local": ("省内流动", "within the province"),
    "infected": ("感染者（真实值）", "infected (ground truth)"),
    "pools_positive": ("阳性混管", "positive pools"),
}


def _l(key: str, lang: str) -> str:
    zh, en = LABELS[key]
    return en if lang == "en" else zh


def render(summary: Summary, lang: str = "zh") -> Group:
    en = lang == "en"
    kpis = Table(title=_l("kpis", lang), title_justify="left")
    kpis.add_column(_l("kpi", lang))
    kpis.add_column(_l("ratio", lang), justify="right")
    kpis.add_column(_l("of", lang), justify="right")
    for k in summary.kpis:
        ratio = "—" if k.get("ratio") is None else f"{k['ratio']:.1%}"
        kpis.add_row(k.get("label") or k["name"], ratio, f"{k['numerator']:,} / {k['denominator']:,}")

    situation = Table(title=_l("situation", lang), title_justify="left")
    situation.add_column(_l("figure", lang))
    situation.add_column(_l("value", lang), justify="right")
    head, beds, backlog = summary.headline, summary.beds, summary.backlog
    rows = [
        ("positives", f"{head.get('positives', 0):,}"),
        ("unclassified", f"{max(head.get('unclassified', 0), 0):,}"
                         + (f" ({summary.unclassified:,})" if summary.unclassified != head.get("unclassified") else "")),
        ("awaiting_bed", f"{summary.awaiting_bed:,}"),
        ("beds", f"{beds.get('beds_free', 0):,} / {beds.get('beds_total', 0):,}"),
        ("rooms", f"{beds.get('rooms_free', 0):,} / {beds.get('rooms_total', 0):,}"),
        ("sites_low", f"{beds.get('sites_low', 0):,} / {beds.get('sites', 0):,}"),
        ("in_quarantine", f"{head.get('in_quarantine', 0):,}"),
        ("contacts", f"{head.get('contacts', 0):,}"),
        ("returnees", f"{head.get('returnees', 0):,}"),
        ("backlog", f"{backlog.get('pending_tubes', 0):,}"),
        ("backlog_end", f"{backlog.get('backlog_tubes_at_end', 0):,}"),
        ("lab_capacity", f"{backlog.get('lab_capacity_tubes_per_day', 0):,}"),
        ("advice", ", ".join(backlog.get("advice") or []) or "—"),
    ]
    for key, value in rows:
        situation.add_row(_l(key, lang), value)

    sim = Table(title=_l("simulator", lang), title_justify="left", caption=_l("events_note", lang))
    sim.add_column(_l("figure", lang))
    sim.add_column(_l("value", lang), justify="right")
    span = f"{summary.start.astimezone(CST):%Y-%m-%d %H:%M} → {summary.end.astimezone(CST):%Y-%m-%d %H:%M}"
    sim.add_row(_l("scenario", lang), f"{summary.scenario} (seed {summary.seed}, scale {summary.scale:g})")
    sim.add_row(_l("span", lang), span)
    sim.add_row(_l("clock", lang), _l("clock_on" if summary.clock_controlled else "clock_off", lang))
    for key, value in summary.figures.items():
        label = FIGURES.get(key)
        name = (label[1] if en else label[0]) if label else key
        sim.add_row(name, f"{value:,}")
    sim.add_row(_l("requests", lang), f"{summary.requests:,}")
    sim.add_row(_l("records", lang), f"{summary.records:,}")
    sim.add_row(_l("wall", lang), f"{summary.wall_seconds:.1f}")
    if summary.timings:
        sim.add_row(_l("phases", lang), ", ".join(f"{k} {v:.0f}" for k, v in
                                                  sorted(summary.timings.items(), key=lambda kv: -kv[1])))
    sim.add_row(_l("events", lang), "—" if summary.events is None else f"{summary.events:,}")
    eps = summary.events_per_second
    sim.add_row(_l("eps", lang), "—" if eps is None else f"{eps:,.0f}")
    return Group(kpis, situation, sim)


def print_summary(summary: Summary, lang: str = "zh", console: Console | None = None) -> None:
    (console or Console()).print(render(summary, lang))
