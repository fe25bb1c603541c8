// d06's reference portal: one page per unit of either edition, the nation first (DESIGN §10).
// Plain ES modules, no build step; every figure comes from the public v1 API.
import { ApiError, apiKey, download, features, get, setApiKey } from "./api.js";
import * as charts from "./charts.js";
import { csvFile, saveBlob } from "./export.js";
import {
  indicatorName, isPercent, language, number, percent, setLanguage, t, translateStatic, value,
} from "./i18n.js";

const $ = (id) => document.getElementById(id);
const FIRST_MONTH = "2024-01";
const LAST_LEGACY_MONTH = "2025-06";
const DEFAULT_INDICATOR = "cccd_coverage";

const app = { config: { anonymous_read: false, synthetic: false }, features: {}, catalog: [], coords: {}, page: null, loading: 0 };

// ---- periods ------------------------------------------------------------------------------------------
function monthOf(date) { return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}`; }
function shiftMonth(period, by) {
  const [y, m] = period.split("-").map(Number);
  return monthOf(new Date(y, m - 1 + by, 1));
}
const CURRENT_MONTH = monthOf(new Date());
function lastMonth(edition) { return edition === "legacy" ? LAST_LEGACY_MONTH : CURRENT_MONTH; }
function defaultPeriod(edition) { return edition === "legacy" ? LAST_LEGACY_MONTH : shiftMonth(CURRENT_MONTH, -1); }
function months(edition) {
  const out = [];
  for (let p = lastMonth(edition); p >= FIRST_MONTH; p = shiftMonth(p, -1)) out.push(p);
  return out;
}
function periodLabel(period) {
  const [y, m] = period.split("-");
  return language() === "vi" ? `Tháng ${Number(m)}/${y}` : new Date(Number(y), Number(m) - 1, 1)
    .toLocaleDateString("en-GB", { month: "long", year: "numeric" });
}

// ---- route: #/<edition>/<code>?period=&indicator= ---------------------------------------------------------
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const [edition, code] = path.split("/");
  const params = new URLSearchParams(query || "");
  const ed = edition === "legacy" ? "legacy" : "2025";
  let period = params.get("period") || defaultPeriod(ed);
  if (!/^\d{4}-\d{2}$/.test(period) || period > lastMonth(ed)) period = defaultPeriod(ed);
  return { edition: ed, code: code || "VN", period, indicator: params.get("indicator") || DEFAULT_INDICATOR };
}
export function link(edition, code, extra = {}) {
  const r = route();
  const params = new URLSearchParams({ period: extra.period || r.period, indicator: extra.indicator || r.indicator });
  if (edition === "legacy" && params.get("period") > LAST_LEGACY_MONTH) params.set("period", LAST_LEGACY_MONTH);
  return `#/${edition}/${code}?${params}`;
}
function go(edition, code, extra) { location.hash = link(edition, code, extra); }

// ---- messages -----------------------------------------------------------------------------------------
function notice(text) { $("notice").textContent = text || ""; $("notice").hidden = !text; }
function explain(error) {
  if (error instanceof ApiError && error.status === 401) {
    $("keybox").open = true;
    return t("key_needed");
  }
  if (error instanceof ApiError && error.status === 403) return t("key_refused");
  if (error instanceof ApiError && error.status === 404) return t("not_found");
  return `${t("failed")}: ${error.message}`;
}
function keyState() {
  $("keystate").textContent = apiKey() ? t("key_set") : app.config.anonymous_read ? t("key_anonymous") : t("key_none");
}

// ---- elements ----------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}
const indicatorOf = (code) => app.catalog.find((i) => i.code === code);

// ---- the page --------------------------------------------------------------------------------------------
async function load() {
  const r = route();
  const ticket = ++app.loading;
  performance.mark(`d06-load-${ticket}`);
  const unitParams = { edition: r.edition };
  const at = { edition: r.edition, period: r.period };
  const seriesParams = { edition: r.edition, indicator: r.indicator, from: FIRST_MONTH, to: lastMonth(r.edition) };
  const optional = (promise) => promise.catch(() => null);
  try {
    const [unit, values, previous, series, lineage, coords] = await Promise.all([
      get(`/v1/units/${r.code}`, unitParams),
      get(`/v1/units/${r.code}/values`, at),
      optional(get(`/v1/units/${r.code}/values`, { ...at, period: shiftMonth(r.period, -1) })),
      optional(get(`/v1/units/${r.code}/series`, seriesParams)),
      r.code === "VN" ? null : optional(get(`/v1/units/${r.code}/lineage`, unitParams)),
      coordinates(r.edition),
    ]);
    const [children, quality] = await Promise.all([
      unit.children ? optional(get(`/v1/units/${r.code}/children/values`, { ...at, indicator: r.indicator, limit: 500 })) : null,
      app.features.quality ? optional(get(`/v1/units/${r.code}/quality`, { period: r.period, edition: r.edition, limit: 50 })) : null,
    ]);
    if (ticket !== app.loading) return;  // a later navigation won
    notice("");
    app.page = { route: r, unit, values, previous, children, series, lineage, quality, coords };
    render();
    // How long a unit's page takes, from the navigation to the drawn charts (docs/performance.md reads it).
    performance.measure("d06-page", `d06-load-${ticket}`);
  } catch (error) {
    if (ticket === app.loading) notice(explain(error));
  }
}

async function coordinates(edition) {
  if (!app.coords[edition]) {
    app.coords[edition] = fetch(`/portal/coordinates/${edition}.json`).then((r) => r.json()).catch(() => ({}));
  }
  return app.coords[edition];
}

function render() {
  const { route: r, unit, values, previous, children, series, lineage, quality, coords } = app.page;
  document.title = `${unit.name} · d06`;
  renderControls(r);
  renderCrumbs(unit);
  $("title").textContent = unit.name;
  $("subtitle").textContent = [t("level")[unit.level] || unit.level, t("edition_name")[unit.edition], unit.code,
    unit.children ? t("children_count", unit.children) : null].filter(Boolean).join(" · ");
  renderLineage(lineage);
  $("partial").hidden = !values.partial;
  renderCards(values, previous, r);
  renderChildren(children, r, coords);
  const indicator = indicatorOf(r.indicator);
  if (series && indicator) charts.series($("series"), series.points, indicator, r.period); else charts.clear($("series"));
  renderQuality(quality);
  $("export-xlsx").hidden = !(app.features.childrenFormat && children);
}

function renderControls(r) {
  $("edition").value = r.edition;
  const period = $("period");
  period.replaceChildren(...months(r.edition).map((p) => el("option", { value: p }, periodLabel(p))));
  period.value = r.period;
  const indicator = $("indicator");
  indicator.replaceChildren(...app.catalog.filter((i) => i.rollup).map((i) => el("option", { value: i.code }, indicatorName(i))));
  indicator.value = r.indicator;
}

function renderCrumbs(unit) {
  const items = unit.ancestors.map((a) => el("li", {}, el("a", { href: link(unit.edition, a.code) }, a.name)));
  items.push(el("li", { "aria-current": "page" }, unit.name));
  $("crumbs").replaceChildren(...items);
}

function renderLineage(lineage) {
  const box = $("lineage");
  if (!lineage || !lineage.items.length) { box.replaceChildren(); return; }
  const other = lineage.edition === "2025" ? "legacy" : "2025";
  const label = lineage.direction === "formed_from" ? t("formed_from") : t("went_into");
  const links = lineage.items.map((i, n) => [n ? ", " : "", el("a", { href: link(other, i.code) }, i.name),
    i.weight < 1 ? ` (${percent(100 * i.weight)})` : ""]);
  box.replaceChildren(el("strong", {}, `${label}: `), ...links.flat());
}

function change(now, before, indicator) {
  if (!before || before.value === null || now.value === null) return t("no_previous");
  const diff = now.value - before.value;
  if (isPercent(indicator)) return `${number(diff, true)} ${t("points")}`;
  const rel = before.value ? ` (${percent((100 * diff) / before.value, true)})` : "";
  return `${number(diff, true)}${rel}`;
}

function status(v, indicator) {
  if (indicator.target === null || v.value === null) return null;
  const met = v.value >= indicator.target;
  const gap = indicator.target - v.value;
  const text = met ? t("target_met") : t("target_gap", isPercent(indicator) ? `${number(gap)} ${t("points")}` : number(gap));
  const share = Math.max(0, Math.min(100, (100 * v.value) / indicator.target));
  return el("div", { class: `status ${met ? "met" : gap > 5 ? "far" : "near"}` },
    el("div", { class: "gauge", role: "presentation" }, el("span", { style: `width:${share}%` })),
    el("span", {}, `${t("target")} ${value(indicator.target, indicator)} · ${text}`));
}

// A value's flags in one line: each rule by its code and both sides, each outlier by its score.
function flagText(f) {
  if (f.kind === "rule") return t("flag_rule", f.code, t("importance")[f.importance] || f.importance, value(f.left), value(f.right));
  return f.constant_history ? t("flag_constant") : t("flag_outlier", number(f.score));
}

function flagsOf(v) {
  const flags = Array.isArray(v.flags) ? v.flags : [];
  if (!flags.length) return null;
  const titles = flags.map((f) => flagText(f) + (f.acknowledged ? ` (${t("checked")})` : ""));
  return el("p", { class: "flag", title: titles.join("; ") }, `⚑ ${t("flags", flags.length)}: ${titles.join("; ")}`);
}

function renderCards(values, previous, r) {
  const before = new Map((previous ? previous.values : []).map((v) => [v.indicator, v]));
  const shown = values.values.filter((v) => v.value !== null && indicatorOf(v.indicator));
  const cards = shown.map((v) => {
    const indicator = indicatorOf(v.indicator);
    const badges = [values.partial ? t("partial_short") : null, v.basis !== "native" ? t("reexpressed") : null,
      v.estimated ? t("estimated") : null].filter(Boolean);
    const both = v.reported && v.computed && v.reported.value !== null && v.computed.value !== null
      && v.reported.value !== v.computed.value;
    return el("article", { class: `card${v.indicator === r.indicator ? " chosen" : ""}` },
      el("h3", {}, el("a", { href: link(r.edition, r.code, { indicator: v.indicator }) }, indicatorName(indicator))),
      el("p", { class: "big" }, value(v.value, indicator),
        ...badges.map((b) => el("span", { class: "badge" }, b))),
      v.numerator !== null && v.denominator !== null && indicator.measure !== "boolean"
        ? el("p", { class: "muted" }, `${number(v.numerator)} / ${number(v.denominator)}`) : null,
      indicator.measure === "boolean" && v.denominator !== null
        ? el("p", { class: "muted" }, `${number(v.numerator)}/${number(v.denominator)}`) : null,
      status(v, indicator),
      el("p", {}, el("span", { class: "muted" }, `${t("change")}: `), change(v, before.get(v.indicator), indicator)),
      v.expected ? el("p", { class: "muted" }, t("completeness", v.reporting, v.expected)) : null,
      both ? el("p", { class: "muted" }, t("reported_vs_computed", value(v.reported.value, indicator), value(v.computed.value, indicator))) : null,
      flagsOf(v));
  });
  $("cards").replaceChildren(...cards);
  const missing = app.catalog.length - shown.length;
  $("cards-empty").textContent = shown.length ? (missing > 0 ? t("cards_more", missing) : "") : t("cards_empty");
}

function renderChildren(children, r, coords) {
  const indicator = indicatorOf(r.indicator);
  const pick = (code) => go(r.edition, code);
  $("children-section").hidden = !children || !indicator;
  if (!children || !indicator) {
    charts.clear($("ranking"));
    $("children-table").replaceChildren();
    charts.clear($("map"));
    $("map-section").hidden = true;
    return;
  }
  $("children-note").textContent = `${indicatorName(indicator)} · ${periodLabel(r.period)} · ${t("children_note", children.reporting, children.total)}`;
  charts.ranking($("ranking"), children.items, indicator, pick);
  const head = el("tr", {}, ...[t("rank"), t("unit"), t("value"), t("reporting")].map((h) => el("th", { scope: "col" }, h)));
  const rows = children.items.map((c) => el("tr", {},
    el("td", {}, c.value === null ? "—" : String(c.rank)),
    el("td", {}, el("a", { href: link(r.edition, c.unit.code) }, c.unit.name),
      Array.isArray(c.flags) && c.flags.length ? el("span", { class: "flag" }, " ⚑") : null),
    el("td", { class: "num" }, value(c.value, indicator), c.basis && c.basis !== "native" ? el("span", { class: "badge" }, c.estimated ? t("estimated") : t("reexpressed")) : null),
    el("td", { class: "num" }, c.expected === null ? "" : `${c.reporting}/${c.expected}`)));
  $("children-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("map-section").hidden = !charts.map($("map"), children.items, coords, indicator, pick);
}

function periodText(period) { return /^\d{4}-\d{2}$/.test(period) ? periodLabel(period) : period; }

// One flag of the listing: where and when, what it is about, both sides, and a reviewer's check if any.
function qualityItem(f) {
  const name = language() === "vi" ? f.name_vi : f.name_en;
  const about = (f.indicators || []).map((code) => indicatorName(indicatorOf(code)) || code).join(", ");
  const stock = (f.indicators || []).some((code) => (indicatorOf(code) || {}).measure === "stock");
  const detail = f.kind === "rule"
    ? t("rule_sides", `${f.left_expression} ${f.operator} ${f.right_expression}`, value(f.left), value(f.right))
    : t(f.constant_history ? "outlier_constant" : "outlier_sides", value(f.left), value(f.right),
      f.score === null ? "∞" : number(f.score), stock);
  const ack = f.acknowledged
    ? el("p", { class: "muted" }, t("checked_by", f.acknowledged.by, new Date(f.acknowledged.at).toLocaleDateString(
      language() === "vi" ? "vi-VN" : "en-GB"), f.acknowledged.comment || ""))
    : null;
  return el("li", { class: `q-${f.importance}` },
    el("strong", {}, `${f.unit.name} · ${periodText(f.period)}`),
    ` · ${name} (${t("importance")[f.importance] || f.importance})`,
    el("p", { class: "muted" }, `${about}: ${detail}`), ack);
}

function renderQuality(quality) {
  const section = $("quality-section");
  section.hidden = !quality;
  if (!quality) return;
  const items = (quality.items || []).map(qualityItem);
  if (quality.next_cursor) items.push(el("li", { class: "muted" }, t("quality_more")));
  $("quality").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, t("quality_none"))]));
}

// ---- search -----------------------------------------------------------------------------------------------
let searchTimer = null;
async function search(text) {
  const list = $("results");
  if (text.trim().length < 2) { list.hidden = true; return; }
  const ask = (edition) => get("/v1/units", { q: text, edition, limit: 8 }).then((p) => p.items, () => []);
  const [now, old] = await Promise.all([ask("2025"), ask("legacy")]);
  if ($("q").value !== text) return;
  const found = [...now, ...old];
  const items = found.map((u) => el("li", {}, el("a", { href: link(u.edition, u.code), class: "result", onclick: () => { list.hidden = true; } },
    el("span", {}, u.name), el("small", {}, ` ${t("level")[u.level] || u.level} · ${t("edition_name")[u.edition]} · ${u.code}`))));
  list.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, t("search_none"))]));
  list.hidden = false;
}

// ---- export: what is on screen --------------------------------------------------------------------------
function exportCsv() {
  if (!app.page) return;
  const { route: r, unit, values, children, series } = app.page;
  saveBlob(csvFile(unit, values, children, series, app.catalog), `d06-${r.edition}-${r.code}-${r.period}.csv`);
}

async function exportXlsx() {
  const r = route();
  try {
    const blob = await download(`/v1/units/${r.code}/children/values`, { edition: r.edition, period: r.period, indicator: r.indicator, limit: 500, format: "xlsx" });
    saveBlob(blob, `d06-${r.edition}-${r.code}-${r.indicator}-${r.period}.xlsx`);
  } catch (error) { notice(explain(error)); }
}

// ---- start -------------------------------------------------------------------------------------------
function wire() {
  $("lang").addEventListener("click", () => {
    setLanguage(language() === "vi" ? "en" : "vi");
    applyLanguage();
    if (app.page) render();
  });
  $("keyform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setApiKey($("key").value.trim());
    $("key").value = "";
    keyState();
    $("keybox").open = false;
    start();
  });
  $("forget").addEventListener("click", () => { setApiKey(""); keyState(); });
  $("q").addEventListener("input", (ev) => { clearTimeout(searchTimer); searchTimer = setTimeout(() => search(ev.target.value), 150); });
  $("q").addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown") { ev.preventDefault(); $("results").querySelector("a")?.focus(); }
    if (ev.key === "Escape") $("results").hidden = true;
  });
  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); $("results").querySelector("a")?.click(); });
  $("edition").addEventListener("change", (ev) => go(ev.target.value, "VN"));
  $("period").addEventListener("change", (ev) => go(route().edition, route().code, { period: ev.target.value }));
  $("indicator").addEventListener("change", (ev) => go(route().edition, route().code, { indicator: ev.target.value }));
  $("export-csv").addEventListener("click", exportCsv);
  $("export-xlsx").addEventListener("click", exportXlsx);
  window.addEventListener("hashchange", () => { $("results").hidden = true; load(); });
}

function applyLanguage() {
  translateStatic();
  $("lang").textContent = language() === "vi" ? "English" : "Tiếng Việt";
  $("lang").lang = language() === "vi" ? "en" : "vi";
  $("banner").textContent = t("synthetic");
  keyState();
}

async function start() {
  try {
    app.catalog = (await get("/v1/indicators")).items;
  } catch (error) { notice(explain(error)); return; }
  await load();
}

async function boot() {
  setLanguage(language());
  const [config, found] = await Promise.all([
    fetch("/portal/config.json").then((r) => r.json()).catch(() => app.config), features()]);
  app.config = config;
  app.features = found;
  $("banner").hidden = !config.synthetic;
  applyLanguage();
  wire();
  if (!apiKey() && !config.anonymous_read) {
    $("keybox").open = true;
    notice(t("key_needed"));
    return;
  }
  await start();
}

boot();
