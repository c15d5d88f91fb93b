// What-if panel (推演对比) on the command screen: pick a built-in scenario and levers, follow the
// runs, read the table, download the brief. It talks to /simulations, which only the embedded
// platform (`fangkong up`) has: anywhere else (or for a role that may not) the panel stays hidden.
// Kept apart from app.js on purpose: its own section, its own styles, no shared state but the token.
"use strict";

(() => {
  const T = {
    zh: {
      title: "推演对比：如果……会怎样", scenario: "场景", scale: "规模", seed: "随机种子", combined: "另加一次组合推演",
      start: "开始推演对比", stop: "停止", running: "运行中", done: "已完成", failed: "失败", stopped: "已停止",
      run: "第", of: "次，共", brief: "简报", busy: "已有一次推演对比在运行",
      hint: "每个杠杆单独推演一次（同一疫情），与不变的基线并排比较；每次在临时平台上运行，不影响本平台数据。",
      none: "至少选择一个杠杆", figure: "指标",
      "school-outbreak": "高校疫情", "spring-festival": "春节返乡", "mass-screening": "全员核酸",
    },
    en: {
      title: "What-if comparison", scenario: "Scenario", scale: "Scale", seed: "Seed", combined: "one more run with all together",
      start: "Run comparison", stop: "Stop", running: "running", done: "done", failed: "failed", stopped: "stopped",
      run: "run", of: "of", brief: "Brief", busy: "a comparison is already running",
      hint: "Each lever is its own run of the same outbreak, beside the unchanged baseline; runs play on throwaway platforms, never on this one's data.",
      none: "pick at least one lever", figure: "figure",
      "school-outbreak": "school outbreak", "spring-festival": "spring festival", "mass-screening": "mass screening",
    },
  };
  const DEFAULTS = { beds: "+50%", rooms: "+50%", labs: "+30%", doctors: "+50%", "pool-ratio": "20", "supporting-cities": "3" };
  const CHECKED = new Set(["beds", "labs", "pool-ratio", "supporting-cities"]);
  const lang = () => (localStorage.getItem("fk.lang") === "en" ? "en" : "zh");
  const t = (k) => T[lang()][k] || k;
  const token = () => sessionStorage.getItem("fk.token") || "";
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v; else if (k.startsWith("on")) node[k] = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  };
  let options = null;
  let job = null;
  let timer = null;
  let panel = null;

  async function call(method, path, body) {
    const response = await fetch(path, {
      method, headers: { Authorization: `Bearer ${token()}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, data };
  }

  function style() {
    const css = `
#whatif { margin:0 24px 16px; }
#whatif .wf-form { display:flex; flex-wrap:wrap; gap:10px 16px; align-items:center; margin-bottom:8px; }
#whatif .wf-lever { display:flex; gap:4px; align-items:center; }
#whatif .wf-lever input[type=text] { width:64px; }
#whatif input[type=number] { width:80px; }
#whatif select { background:#0a2a5e; color:var(--text); border:1px solid var(--line); border-radius:4px; padding:6px; }
#whatif .wf-hint, #whatif .wf-sub { color:var(--muted); font-size:12px; margin:4px 0; }
#whatif .wf-status { margin:6px 0; }
#whatif .wf-error { color:var(--bad); white-space:pre-wrap; font-size:12px; }
#whatif table { width:100%; border-collapse:collapse; font-size:13px; }
#whatif th, #whatif td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:right; }
#whatif th:first-child, #whatif td:first-child { text-align:left; }
#whatif td.section { text-align:left; color:var(--accent); padding-top:10px; }
#whatif .better { color:var(--ok); } #whatif .worse { color:var(--bad); } #whatif .same { color:var(--muted); }
#whatif .wf-downloads { display:flex; gap:8px; margin-top:8px; }`;
    document.head.append(el("style", {}, css));
  }

  function form() {
    const scenario = el("select", { "data-testid": "whatif-scenario" },
      ...options.scenarios.map((s) => el("option", { value: s.name }, `${t(s.name)} (${s.name})`)));
    const levers = el("span", { class: "wf-form" });
    const drawLevers = () => {
      levers.replaceChildren();
      const allowed = options.scenarios.find((s) => s.name === scenario.value).levers;
      for (const spec of options.levers.filter((l) => allowed.includes(l.name))) {
        const box = el("input", { type: "checkbox", "data-lever": spec.name });
        box.checked = CHECKED.has(spec.name);
        const value = el("input", { type: "text", value: DEFAULTS[spec.name] || "+50%", "data-value": spec.name });
        levers.append(el("label", { class: "wf-lever", title: spec.name }, box, ` ${lang() === "en" ? spec.en : spec.zh} `, value));
      }
    };
    scenario.onchange = drawLevers;
    drawLevers();
    const scale = el("input", { type: "number", step: "0.01", min: "0.01", max: String(options.max_scale), value: "0.05", "data-testid": "whatif-scale" });
    const seed = el("input", { type: "number", min: "0", value: "1" });
    const combined = el("input", { type: "checkbox" });
    const message = el("span", { class: "wf-error" });
    const go = el("button", { "data-testid": "whatif-start" }, t("start"));
    go.onclick = async () => {
      const chosen = [...levers.querySelectorAll("input[data-lever]")].filter((b) => b.checked)
        .map((b) => `${b.dataset.lever}=${levers.querySelector(`input[data-value="${b.dataset.lever}"]`).value.trim()}`);
      if (!chosen.length) { message.textContent = t("none"); return; }
      message.textContent = "";
      const { status, data } = await call("POST", `/simulations?lang=${lang()}`, {
        scenario: scenario.value, levers: chosen, scale: Number(scale.value), seed: Number(seed.value), combined: combined.checked,
      });
      if (status === 202) { job = data; draw(); poll(); return; }
      const detail = data && data.detail;
      message.textContent = status === 409 ? t("busy") : (detail && (detail.message || JSON.stringify(detail))) || String(status);
    };
    return el("div", {},
      el("div", { class: "wf-form" }, el("label", {}, `${t("scenario")} `, scenario), el("label", {}, `${t("scale")} `, scale),
        el("label", {}, `${t("seed")} `, seed), el("label", {}, combined, ` ${t("combined")}`), go, message),
      levers, el("p", { class: "wf-hint" }, t("hint")));
  }

  function table(data) {
    const head = el("tr", {}, el("th", {}, data.figure), ...data.columns.map((c) => el("th", {}, c)));
    const body = [];
    let section = null;
    for (const row of data.rows) {
      if (row.section !== section) {
        section = row.section;
        body.push(el("tr", {}, el("td", { class: "section", colspan: String(data.columns.length + 1) }, section)));
      }
      body.push(el("tr", {}, el("td", {}, row.label), ...row.cells.map((c) => {
        const cell = el("td", {}, c.text);
        if (c.delta !== null) {
          cell.append(" ", el("span", { class: c.better === true ? "better" : c.better === false ? "worse" : "same" }, `(${c.delta})`));
        }
        return cell;
      })));
    }
    return el("div", {}, ...data.subtitle.map((s) => el("p", { class: "wf-sub" }, s)),
      el("table", { "data-testid": "whatif-table" }, el("thead", {}, head), el("tbody", {}, ...body)));
  }

  async function download(format) {
    const response = await fetch(`/simulations/${job.id}/brief?format=${format}&lang=${lang()}`,
      { headers: { Authorization: `Bearer ${token()}` } });
    if (!response.ok) { alert(`${response.status} ${await response.text()}`); return; }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `what-if-${job.id}.${format}` });
    document.body.append(link); link.click(); link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function status() {
    if (!job) return el("div");
    const parts = [`${t(job.status)}`];
    if (job.runs_total) parts.push(lang() === "en" ? `${job.runs_done}/${job.runs_total} runs` : `${job.runs_done}/${job.runs_total} 次已完成`);
    if (job.current && job.status === "running") parts.push(job.current.label[lang()]);
    const line = el("div", { class: "wf-status", "data-testid": "whatif-status" }, parts.join(" · "));
    if (job.status === "running") {
      line.append(" ", el("button", { onclick: async () => { const r = await call("DELETE", `/simulations/${job.id}?lang=${lang()}`); job = r.data; draw(); } }, t("stop")));
    }
    const out = el("div", {}, line);
    if (job.error) out.append(el("div", { class: "wf-error" }, job.error));
    if (job.table) out.append(table(job.table));
    if (job.status === "done") {
      out.append(el("div", { class: "wf-downloads" },
        el("button", { onclick: () => download("xlsx"), "data-testid": "whatif-xlsx" }, `${t("brief")} XLSX`),
        el("button", { onclick: () => download("pdf") }, `${t("brief")} PDF`)));
    }
    return out;
  }

  function draw() {
    if (!panel) return;
    panel.replaceChildren(el("h2", {}, t("title")), form(), status());
  }

  async function poll() {
    clearTimeout(timer);
    if (!job) return;
    const { status: code, data } = await call("GET", `/simulations/${job.id}?lang=${lang()}`);
    if (code === 200) { job = data; draw(); }
    if (code === 200 && job.status === "running") timer = setTimeout(poll, 2000);
  }

  async function setup() {
    const screen = document.getElementById("screen");
    if (panel && !token()) { panel.remove(); panel = null; job = null; clearTimeout(timer); return; }
    if (panel || !screen || screen.hidden || !token()) return;
    const { status: code, data } = await call("GET", "/simulations/options");
    if (code !== 200) return;   // not the embedded platform, or not a commander: no panel
    options = data;
    style();
    panel = el("section", { id: "whatif", class: "panel", "data-testid": "whatif" });
    screen.insertBefore(panel, screen.querySelector("footer"));
    const current = await call("GET", `/simulations/current?lang=${lang()}`);
    if (current.status === 200) job = current.data;
    draw();
    if (job && job.status === "running") poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    // The screen appears after login (app.js): look for it now and then rather than hooking into app.js.
    setInterval(setup, 1500);
    document.addEventListener("click", (e) => {
      if (e.target.closest(".lang-toggle")) setTimeout(() => { draw(); if (job) poll(); }, 0);
    });
  });
})();
