// The three charts, drawn by plotly.js (served from the `plotly` wheel by the query service itself).
import { indicatorName, isPercent, language, separators, t, value } from "./i18n.js";

const CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
const FONT = { family: "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif", size: 12, color: "#1f2933" };
const BLUE = "#3b6fd8", GREEN = "#15803d", GREY = "#9aa5b1", AMBER = "#b45309", RED = "#b91c1c";
const REFORM = "2025-07-01";

function base(extra) {
  return { font: FONT, separators: separators(), paper_bgcolor: "#fff", plot_bgcolor: "#fff", ...extra };
}

function suffix(indicator) {
  if (!isPercent(indicator)) return "";
  return language() === "vi" ? " %" : "%";
}

function draw(el, traces, layout) {
  if (!window.Plotly) return;
  window.Plotly.react(el, traces, base(layout), CONFIG);
}

export function clear(el) {
  if (window.Plotly) window.Plotly.purge(el);
  el.textContent = "";
  el.style.height = "";
}

// Children ranked by value, largest first, as horizontal bars; those below the target in amber.
export function ranking(el, items, indicator, onPick) {
  const shown = items.filter((i) => i.value !== null && i.value !== undefined);
  if (!shown.length) { clear(el); return; }
  const rows = shown.slice().reverse();  // plotly draws the first category at the bottom
  const target = indicator.target;
  // The three furthest behind stand out (the question a review asks first); a target met is green.
  const laggards = new Set(shown.length > 5 ? shown.slice(-3).map((i) => i.unit.code) : []);
  const colours = rows.map((i) => (target !== null && i.value >= target ? GREEN
    : laggards.has(i.unit.code) ? AMBER : BLUE));
  const height = Math.max(160, 22 * rows.length + 60);
  el.style.height = `${height}px`;
  draw(el, [{
    type: "bar", orientation: "h", x: rows.map((i) => i.value), y: rows.map((i) => i.unit.name),
    customdata: rows.map((i) => i.unit.code), marker: { color: colours },
    text: rows.map((i) => value(i.value, indicator)), textposition: "auto", cliponaxis: false,
    hovertemplate: "%{y}: %{text}<extra></extra>",
  }], {
    height, margin: { l: 8, r: 12, t: 8, b: 28 },
    xaxis: { ticksuffix: suffix(indicator), zeroline: true, gridcolor: "#e5e7eb", fixedrange: true },
    yaxis: { automargin: true, fixedrange: true, tickfont: { size: 11 } },
    shapes: target === null ? [] : [{ type: "line", x0: target, x1: target, yref: "paper", y0: 0, y1: 1,
      line: { color: RED, dash: "dot", width: 1.5 } }],
  });
  el.setAttribute("aria-label", `${t("children")}: ${indicatorName(indicator)}`);
  if (el.on) el.removeAllListeners?.("plotly_click");
  el.on?.("plotly_click", (ev) => onPick(ev.points[0].customdata));
}

function monthDate(period) { return period.length === 7 ? `${period}-01` : period; }

// One line across the reform; the unit's own points filled, re-expressed ones open, estimated ones diamonds.
export function series(el, points, indicator, selected) {
  const kinds = [
    ["native", (p) => p.basis === "native", { symbol: "circle", color: BLUE }],
    ["reexpressed_exact", (p) => p.basis !== "native" && !p.estimated, { symbol: "circle-open", color: BLUE }],
    ["reexpressed_estimated", (p) => p.basis !== "native" && p.estimated, { symbol: "diamond-open", color: AMBER }],
  ];
  const valued = points.filter((p) => p.value !== null);
  const fmt = (p) => value(p.value, indicator) + (p.partial ? ` (${t("partial_short")})` : "");
  const traces = [{
    type: "scatter", mode: "lines", x: points.map((p) => monthDate(p.period)), y: points.map((p) => p.value),
    line: { color: GREY, width: 1.5 }, hoverinfo: "skip", showlegend: false, connectgaps: false,
  }];
  for (const [name, test, marker] of kinds) {
    const chosen = valued.filter(test);
    if (!chosen.length) continue;
    traces.push({
      type: "scatter", mode: "markers", name: t(name), x: chosen.map((p) => monthDate(p.period)),
      y: chosen.map((p) => p.value), text: chosen.map(fmt),
      marker: { size: 8, symbol: marker.symbol, color: marker.color, line: { width: 2, color: marker.color } },
      hovertemplate: `%{x|%m/%Y}: %{text} · ${t(name)}<extra></extra>`,
    });
  }
  const shapes = [];
  const annotations = [];
  const xs = points.map((p) => monthDate(p.period));
  if (xs.length && xs[0] < REFORM && xs[xs.length - 1] >= REFORM) {
    shapes.push({ type: "line", x0: REFORM, x1: REFORM, yref: "paper", y0: 0, y1: 1, line: { color: GREY, dash: "dash", width: 1 } });
    annotations.push({ x: REFORM, yref: "paper", y: 1.02, text: t("reform"), showarrow: false, xanchor: "left", font: { size: 10, color: "#52606d" } });
  }
  if (selected) {
    shapes.push({ type: "rect", x0: monthDate(selected), x1: monthDate(selected), yref: "paper", y0: 0, y1: 1,
      line: { color: "#7c3aed", width: 6 }, opacity: 0.15 });
  }
  if (indicator.target !== null) {
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: indicator.target, y1: indicator.target,
      line: { color: RED, dash: "dot", width: 1.5 } });
  }
  el.style.height = "320px";
  draw(el, traces, {
    height: 320, margin: { l: 8, r: 12, t: 24, b: 40 }, shapes, annotations,
    legend: { orientation: "h", y: -0.18, x: 0 },
    xaxis: { type: "date", tickformat: "%m/%Y", gridcolor: "#f0f2f4", fixedrange: true },
    yaxis: { ticksuffix: suffix(indicator), automargin: true, gridcolor: "#e5e7eb", fixedrange: true, rangemode: "tozero" },
  });
  el.setAttribute("aria-label", `${t("series")}: ${indicatorName(indicator)}`);
}

// The children as points at their seats, coloured and sized by value; no tiles (no network), lon/lat axes.
export function map(el, items, coordinates, indicator, onPick) {
  const placed = items.filter((i) => coordinates[i.unit.code]);
  if (!placed.length) { clear(el); return false; }
  const lat = placed.map((i) => coordinates[i.unit.code][0]);
  const lon = placed.map((i) => coordinates[i.unit.code][1]);
  const values = placed.map((i) => i.value);
  const known = values.filter((v) => v !== null);
  const lo = Math.min(...known), hi = Math.max(...known);
  const size = values.map((v) => (v === null || hi === lo ? 8 : 7 + 11 * ((v - lo) / (hi - lo))));
  const meanLat = lat.reduce((a, b) => a + b, 0) / lat.length;
  el.style.height = "420px";
  draw(el, [{
    type: "scatter", mode: "markers", x: lon, y: lat, customdata: placed.map((i) => i.unit.code),
    text: placed.map((i) => `${i.unit.name}: ${value(i.value, indicator)}`),
    hovertemplate: "%{text}<extra></extra>",
    marker: {
      size, color: values.map((v) => (v === null ? null : v)), colorscale: "Viridis", reversescale: true,
      showscale: known.length > 0, line: { width: 0.5, color: "#334e68" },
      colorbar: { thickness: 10, ticksuffix: suffix(indicator), outlinewidth: 0 },
    },
  }], {
    height: 420, margin: { l: 8, r: 8, t: 8, b: 24 },
    xaxis: { visible: false, fixedrange: false },
    yaxis: { visible: false, scaleanchor: "x", scaleratio: 1 / Math.cos((meanLat * Math.PI) / 180) },
    dragmode: "pan",
  });
  el.setAttribute("aria-label", `${t("map")}: ${indicatorName(indicator)}`);
  el.on?.("plotly_click", (ev) => onPick(ev.points[0].customdata));
  return true;
}
