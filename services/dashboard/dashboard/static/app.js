// The command screen (指挥大屏). Plain JS, no build step; ECharts is vendored beside this file.
// Everything it shows comes from /dashboard/* with the caller's token: counts only, never a person.
"use strict";

const I18N = {
  zh: {
    title: "疫情防控指挥大屏", pasteToken: "粘贴令牌", login: "登录", logout: "退出",
    devLogin: "演示模式：按地区登录（生产环境不可用）", reportXlsx: "日报 XLSX", reportPdf: "日报 PDF",
    unclassified: "阳性未分类", backlog: "待检积压管数", inQuarantine: "在管隔离人数",
    positives: "阳性人员（累计）", contacts: "密接/次密接（累计）", trends: "近14日趋势",
    drill: "下级地区（点击下钻）", sites: "隔离点/医院床位占用", lab: "核酸检测：采样、出结果与积压",
    updated: "更新于", noPii: "本屏仅显示统计数字，不含个人信息", all: "全国", region: "地区",
    occupied: "占用", free: "空余", collected: "采样管数", resulted: "出结果管数", tubeBacklog: "积压",
    positivesDay: "新增阳性", returnees: "返回人员", cases: "病例", badToken: "令牌无效或已过期",
    numerator: "分子", denominator: "分母", noData: "暂无数据", toggle: "EN",
    vacc: "疫苗接种（第一剂）对照目标", reached: "已接种", target: "目标",
    outcomes: "四早：时效（近14日，中位数 / P90 / 最长）", bedWait: "阳性待床最久", oldestUnclassified: "最久未分类阳性",
    waitingN: "等待 {n} 人", unclassifiedN: "未分类 {n} 人", interval: "环节", count: "完成数", median: "中位数",
    p90: "P90", max: "最长", extra: "其他", result_to_bed: "阳性结果 → 入院床位",
    case_to_contacts_ordered: "阳性 → 密接落实隔离", collection_to_result: "采样 → 出结果",
    positive_to_classified: "阳性 → 分类（确诊/无症状）", registered_to_first_test: "返回登记 → 首次核酸",
    within: "{h}小时内 {p}", waiting: "等待 {n}", medianHours: "中位数（小时）",
    inbound_international: "境外返回", inbound_port_completed_elsewhere: "外省口岸隔离期满", domestic_key_region: "重点地区来返",
    domestic_other: "其他省外来返", day: "天", hour: "小时", minute: "分", none: "无",
  },
  en: {
    title: "Epidemic Command Screen", pasteToken: "Paste a token", login: "Log in", logout: "Log out",
    devLogin: "Demo mode: log in for a region (not available in production)", reportXlsx: "Report XLSX",
    reportPdf: "Report PDF", unclassified: "Positives not classified", backlog: "Tubes awaiting a result",
    inQuarantine: "People in quarantine", positives: "Positives (total)", contacts: "Contacts (total)",
    trends: "Last 14 days", drill: "Regions below (click to drill down)", sites: "Site beds occupied",
    lab: "Testing: collected, resulted, backlog", updated: "Updated", noPii: "Counts only: no personal data on this screen",
    all: "Whole country", region: "Region", occupied: "Occupied", free: "Free", collected: "Tubes collected",
    resulted: "Tubes resulted", tubeBacklog: "Backlog", positivesDay: "New positives", returnees: "Returnees",
    cases: "Cases", badToken: "Invalid or expired token", numerator: "numerator", denominator: "denominator",
    noData: "No data", toggle: "中文",
    vacc: "Vaccination (first dose) against targets", reached: "Reached", target: "Target",
    outcomes: "Four earlies: intervals (14 days; median / p90 / max)", bedWait: "Longest wait for a bed",
    oldestUnclassified: "Oldest unclassified positive", waitingN: "{n} waiting", unclassifiedN: "{n} unclassified",
    interval: "Interval", count: "Done", median: "Median", p90: "P90", max: "Max", extra: "Other",
    result_to_bed: "Positive result → hospital bed", case_to_contacts_ordered: "Positive → contacts under order",
    collection_to_result: "Swab → result", positive_to_classified: "Positive → classified",
    registered_to_first_test: "Returnee registered → first test", within: "within {h} h: {p}", waiting: "{n} waiting",
    medianHours: "Median (hours)", inbound_international: "Inbound from abroad",
    inbound_port_completed_elsewhere: "Port quarantine done elsewhere", domestic_key_region: "From key regions",
    domestic_other: "Other out-of-province", day: "d", hour: "h", minute: "m", none: "none",
  },
};

const state = {
  lang: localStorage.getItem("fk.lang") || "zh",
  token: sessionStorage.getItem("fk.token") || "",
  home: null,        // the token's own region (top of the drill-down)
  region: null,      // the region shown
  path: [],          // drill-down trail
  day: null,
  source: null,
  charts: {},
};

const $ = (id) => document.getElementById(id);
const t = (key) => I18N[state.lang][key] || key;

function todayBeijing() {
  return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 10);
}

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const response = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
  if (response.status === 401) { logout(t("badToken")); throw new Error("unauthorized"); }
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

function applyLanguage() {
  document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
  document.title = t("title") + " · Fangkong";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll(".lang-toggle").forEach((el) => { el.textContent = t("toggle"); });
}

function toggleLanguage() {
  state.lang = state.lang === "en" ? "zh" : "en";
  localStorage.setItem("fk.lang", state.lang);
  applyLanguage();
  if (!$("screen").hidden) refresh();
}

// --- login ------------------------------------------------------------------------

function showLogin(message = "") {
  $("screen").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function enter(token) {
  state.token = token.trim();
  sessionStorage.setItem("fk.token", state.token);
  try {
    const kpis = await api("/dashboard/kpis", { date: state.day });
    state.home = kpis.region_code;
    state.region = kpis.region_code;
    state.path = [kpis.region_code];
  } catch (e) {
    if (state.token) showLogin(String(e.message || e));
    return;
  }
  $("login").hidden = true;
  $("screen").hidden = false;
  initCharts();
  await refresh();
  connect();
}

async function devLogin() {
  const region = $("dev-region").value.trim();
  const response = await fetch("/dashboard/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ role: "commander", region_code: region }),
  });
  if (!response.ok) { $("login-error").textContent = `${response.status}`; return; }
  await enter((await response.json()).token);
}

function logout(message = "") {
  sessionStorage.removeItem("fk.token");
  state.token = "";
  if (state.source) state.source.close();
  showLogin(message);
}

// --- rendering ------------------------------------------------------------------------

function pct(ratio) { return ratio === null ? "—" : `${(ratio * 100).toFixed(1)}%`; }

function renderKpis(kpis) {
  $("kpis").innerHTML = "";
  for (const k of kpis) {
    const level = k.ratio === null ? "" : k.ratio < 0.8 ? "low" : k.ratio < 0.95 ? "mid" : "";
    const card = document.createElement("div");
    card.className = "kpi";
    card.dataset.testid = `kpi-${k.name}`;
    card.innerHTML = `<div class="name"></div><div class="ratio ${level}"></div>
      <div class="bar"><i style="width:${Math.min(100, (k.ratio || 0) * 100)}%"></i></div>
      <div class="frac"><b class="num"></b> / <b class="den"></b> · <span class="labels"></span></div>`;
    card.querySelector(".name").textContent = k.label;
    card.querySelector(".ratio").textContent = pct(k.ratio);
    card.querySelector(".num").textContent = k.numerator;
    card.querySelector(".den").textContent = k.denominator;
    card.querySelector(".labels").textContent = `${k.numerator_label} / ${k.denominator_label}`;
    $("kpis").appendChild(card);
  }
}

function renderHeadline(h) {
  $("unclassified").textContent = h.unclassified;
  $("backlog").textContent = h.tube_backlog;
  $("in-quarantine").textContent = h.in_quarantine;
  $("positives").textContent = h.positives;
  $("contacts").textContent = h.contacts;
}

function renderCrumbs() {
  const nav = $("crumbs");
  nav.innerHTML = "";
  state.path.forEach((code, i) => {
    const last = i === state.path.length - 1;
    const el = document.createElement(last ? "span" : "a");
    el.textContent = code || t("all");
    if (!last) el.onclick = () => { state.path = state.path.slice(0, i + 1); state.region = code; refresh(); };
    nav.appendChild(el);
    if (!last) nav.appendChild(document.createTextNode("›"));
  });
}

function renderRegions(children) {
  const table = $("regions");
  const cols = [["region_code", t("region")], ["positives", t("positives")], ["unclassified", t("unclassified")],
                ["in_quarantine", t("inQuarantine")], ["tube_backlog", t("tubeBacklog")], ["returnees", t("returnees")]];
  table.innerHTML = "<thead><tr>" + cols.map(() => "<th></th>").join("") + "</tr></thead><tbody></tbody>";
  table.querySelectorAll("th").forEach((th, i) => { th.textContent = cols[i][1]; });
  const body = table.querySelector("tbody");
  if (!children.length) {
    body.innerHTML = "<tr><td></td></tr>";
    body.querySelector("td").textContent = t("noData");
  }
  for (const child of children) {
    const tr = document.createElement("tr");
    const county = !child.region_code.endsWith("00");
    tr.className = county ? "" : "child";
    tr.dataset.region = child.region_code;
    for (const [key] of cols) {
      const td = document.createElement("td");
      td.textContent = child[key];
      if (key === "unclassified" && child[key] > 0) td.className = "bad";
      tr.appendChild(td);
    }
    if (!county) tr.onclick = () => { state.path.push(child.region_code); state.region = child.region_code; refresh(); };
    body.appendChild(tr);
  }
}

function initCharts() {
  for (const id of ["trend", "sites", "lab", "vacc"]) {
    if (!state.charts[id]) state.charts[id] = echarts.init($(id), "dark", { renderer: "canvas" });
  }
  if (!state.charts.outcomes) state.charts.outcomes = echarts.init($("outcome-trend"), "dark", { renderer: "canvas" });
  window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));
}

const chartBase = { backgroundColor: "transparent", textStyle: { fontFamily: "WenQuanYi Micro Hei, sans-serif" },
                    grid: { left: 48, right: 16, top: 36, bottom: 28 }, tooltip: { trigger: "axis" },
                    legend: { top: 0, textStyle: { color: "#d8e6ff" } } };

function renderTrends(series) {
  const byName = Object.fromEntries(series.map((s) => [s.name, s]));
  const days = series[0].points.map((p) => p.date.slice(5));
  const line = (name, label, extra = {}) => ({ name: label, type: "line", smooth: true,
    data: (byName[name] ? byName[name].points : []).map((p) => p.value), ...extra });
  state.charts.trend.setOption({ ...chartBase, xAxis: { type: "category", data: days }, yAxis: { type: "value" },
    series: [line("positives", t("positivesDay"), { itemStyle: { color: "#ff4d4f" } }),
             line("cases", t("cases")), line("returnees", t("returnees"))] }, true);
  state.charts.lab.setOption({ ...chartBase, xAxis: { type: "category", data: days }, yAxis: { type: "value" },
    series: [line("tubes_collected", t("collected"), { type: "bar" }), line("tubes_resulted", t("resulted"), { type: "bar" }),
             line("tube_backlog", t("tubeBacklog"), { itemStyle: { color: "#ffb020" } })] }, true);
}

function renderSites(sites) {
  state.charts.sites.setOption({ ...chartBase, tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: sites.map((s) => s.site_id), axisLabel: { rotate: 30 } }, yAxis: { type: "value" },
    series: [{ name: t("occupied"), type: "bar", stack: "beds", data: sites.map((s) => s.occupied), itemStyle: { color: "#ff7a45" } },
             { name: t("free"), type: "bar", stack: "beds", data: sites.map((s) => s.beds_free), itemStyle: { color: "#27d17f" } }] }, true);
}

function renderVaccination(groups) {
  state.charts.vacc.setOption({ ...chartBase, xAxis: { type: "category", data: groups.map((g) => g.label) },
    yAxis: { type: "value" },
    series: [{ name: t("reached"), type: "bar", data: groups.map((g) => g.people), itemStyle: { color: "#35c3ff" } },
             { name: t("target"), type: "bar", data: groups.map((g) => g.target), itemStyle: { color: "#3b4f7a" } }] }, true);
}

// --- 四早 outcome intervals ------------------------------------------------------------------------

const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, k) => values[k]);

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const minutes = Math.round(seconds / 60);
  const d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
  if (d > 0) return `${d}${t("day")}${h}${t("hour")}`;
  if (h > 0) return `${h}${t("hour")}${m ? m + t("minute") : ""}`;
  return `${m}${t("minute")}`;
}

// The two waits the speeches single out (positives left without a bed, positives nobody classified)
// are red whenever anyone waits at all, and glow past alert_seconds (24 h): see the dashboard README.
function waitCard(card, valueEl, countEl, seconds, n, countKey, limit) {
  valueEl.textContent = n > 0 ? duration(seconds) : t("none");
  countEl.textContent = fill(t(countKey), { n });
  card.classList.toggle("red", n > 0);
  card.classList.toggle("over", n > 0 && seconds > limit);
  card.dataset.over = n > 0 && seconds > limit ? "true" : "false";
}

function renderOutcomes(out) {
  const iv = out.intervals;
  waitCard($("bed-wait-card"), $("bed-wait"), $("bed-waiting"), iv.result_to_bed.longest_wait_seconds,
           iv.result_to_bed.waiting, "waitingN", out.alert_seconds);
  waitCard($("unclassified-age-card"), $("oldest-unclassified"), $("unclassified-count"),
           iv.positive_to_classified.oldest_unclassified_seconds, iv.positive_to_classified.unclassified,
           "unclassifiedN", out.alert_seconds);
  const pctOf = (x) => (x === null || x === undefined ? "—" : pct(x));
  const extras = {
    result_to_bed: (x) => fill(t("waiting"), { n: x.waiting }),
    case_to_contacts_ordered: (x) => fill(t("within"), { h: 24, p: pctOf(x.share_within_24h) }),
    collection_to_result: (x) => `${fill(t("within"), { h: 12, p: pctOf(x.share_within_12h) })} · ${
      fill(t("within"), { h: 24, p: pctOf(x.share_within_24h) })}`,
    positive_to_classified: (x) => fill(t("unclassifiedN"), { n: x.unclassified }),
  };
  const rows = Object.keys(extras).map((k) => [k, t(k), iv[k], extras[k](iv[k])]);
  for (const [cat, x] of Object.entries(iv.registered_to_first_test.by_category)) {
    rows.push([`registered_to_first_test:${cat}`, `${t("registered_to_first_test")}（${t(cat)}）`, x,
               fill(t("waiting"), { n: x.waiting })]);
  }
  const table = $("outcomes");
  const heads = [t("interval"), t("count"), t("median"), t("p90"), t("max"), t("extra")];
  table.innerHTML = "<thead><tr>" + heads.map(() => "<th></th>").join("") + "</tr></thead><tbody></tbody>";
  table.querySelectorAll("th").forEach((th, i) => { th.textContent = heads[i]; });
  const body = table.querySelector("tbody");
  for (const [key, label, x, extra] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.interval = key;
    for (const [i, value] of [label, x.count, duration(x.median_seconds), duration(x.p90_seconds),
                              duration(x.max_seconds), extra].entries()) {
      const td = document.createElement("td");
      td.textContent = value;
      if (i === 4 && x.max_seconds > out.alert_seconds) td.className = "bad";
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  const hours = (k) => out.days.map((d) => {
    const v = d.intervals[k].median_seconds;
    return v === null ? null : Math.round(v / 36) / 100;
  });
  // Daily medians in hours, as bars: a day with one finished interval still shows.
  state.charts.outcomes.setOption({ ...chartBase, animation: false, grid: { left: 48, right: 16, top: 30, bottom: 56 },
    legend: { ...chartBase.legend, top: undefined, bottom: 0, type: "scroll" },
    xAxis: { type: "category", data: out.days.map((d) => d.date.slice(5)) },
    yAxis: { type: "value", name: t("medianHours"), nameTextStyle: { align: "left" } },
    series: Object.keys(extras).map((k) => ({ name: t(k), type: "bar", data: hours(k) })) }, true);
}

function setDownloads() {
  const params = new URLSearchParams({ token: state.token, date: state.day, lang: state.lang });
  if (state.region) params.set("region_code", state.region);
  $("report-xlsx").href = `/dashboard/reports/daily?${params}&format=xlsx`;
  $("report-pdf").href = `/dashboard/reports/daily?${params}&format=pdf`;
}

let refreshing = null;
async function refresh() {
  if (refreshing) { refreshing.again = true; return; }
  refreshing = { again: false };
  try {
    const region = state.region || undefined;
    const to = state.day;
    const from = new Date(new Date(to).getTime() - 13 * 86400000).toISOString().slice(0, 10);
    const [kpis, metrics, regions, sites, vacc, outcomes] = await Promise.all([
      api("/dashboard/kpis", { region_code: region, date: to, lang: state.lang }),
      api("/dashboard/metrics", { region_code: region, from, to, lang: state.lang,
        names: "positives,cases,returnees,tubes_collected,tubes_resulted,tube_backlog" }),
      api("/dashboard/regions", { region_code: region, date: to }),
      api("/dashboard/sites", { region_code: region }),
      api("/dashboard/vaccination", { region_code: region, date: to, lang: state.lang }),
      api("/dashboard/outcomes", { region_code: region, from, to }),
    ]);
    renderKpis(kpis.kpis);
    renderHeadline(kpis.headline);
    renderCrumbs();
    renderRegions(regions.children);
    renderTrends(metrics.series);
    renderSites(sites.sites);
    renderVaccination(vacc.age_groups);
    renderOutcomes(outcomes);
    setDownloads();
    $("updated").textContent = new Date().toLocaleTimeString(state.lang === "en" ? "en-GB" : "zh-CN");
  } catch (e) {
    console.error(e);
  } finally {
    const again = refreshing.again;
    refreshing = null;
    if (again) refresh();
  }
}

// --- live updates -----------------------------------------------------------------------------

let pending = null;
function connect() {
  if (state.source) state.source.close();
  // EventSource cannot set headers: the token goes in the query string.
  state.source = new EventSource(`/dashboard/stream?token=${encodeURIComponent(state.token)}`);
  state.source.addEventListener("hello", () => $("live").classList.add("on"));
  state.source.addEventListener("change", () => {
    $("live").classList.add("flash");
    setTimeout(() => $("live").classList.remove("flash"), 400);
    clearTimeout(pending);
    pending = setTimeout(refresh, 250);  // a burst of changes becomes one refresh
  });
  state.source.onerror = () => $("live").classList.remove("on");
}

// --- start --------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  state.day = todayBeijing();
  $("day").value = state.day;
  $("day").onchange = () => { state.day = $("day").value || todayBeijing(); refresh(); };
  document.querySelectorAll(".lang-toggle").forEach((el) => { el.onclick = toggleLanguage; });
  $("token-login").onclick = () => enter($("token-input").value);
  $("dev-login-btn").onclick = devLogin;
  $("logout").onclick = () => logout();
  applyLanguage();
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) { history.replaceState(null, "", location.pathname); enter(hash.get("token")); return; }
  if (state.token) enter(state.token); else showLogin();
});
