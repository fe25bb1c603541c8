// "Export what is on screen": the unit's cards, its children's ranking and the series, as one CSV that a
// spreadsheet opens (UTF-8 with a BOM, so Vietnamese names survive Excel). Numbers are written as d06 writes
// them (a dot for decimals), so the file reads back the same whatever the reader's language.
const COLUMNS = ["section", "edition", "unit", "name", "level", "indicator", "period", "value", "numerator",
  "denominator", "source", "basis", "estimated", "reporting", "expected", "target", "flags"];

function cell(v) {
  if (v === null || v === undefined) return "";
  const text = String(v);
  return /[",\n\r;]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function flags(v) {
  return Array.isArray(v.flags) ? v.flags.map((f) => (f.kind === "rule" ? f.code : "outlier")).join(" ") : "";
}

function row(section, unit, indicator, period, v, target) {
  return [section, unit.edition, unit.code, unit.name, unit.level, indicator, period, v.value, v.numerator,
    v.denominator, v.source, v.basis, v.estimated, v.reporting, v.expected, target, flags(v)];
}

export function csvFile(unit, values, children, series, catalog) {
  const target = (code) => catalog.find((i) => i.code === code)?.target ?? null;
  const rows = [COLUMNS];
  for (const v of values.values) if (v.value !== null) rows.push(row("indicators", unit, v.indicator, values.period, v, v.target));
  if (children) {
    for (const c of children.items) rows.push(row("children", c.unit, children.indicator, children.period, c, target(children.indicator)));
  }
  if (series) {
    for (const p of series.points) rows.push(row("series", unit, series.indicator, p.period, p, target(series.indicator)));
  }
  const text = rows.map((r) => r.map(cell).join(",")).join("\r\n");
  return new Blob(["\ufeff", text, "\r\n"], { type: "text/csv;charset=utf-8" });
}

export function saveBlob(blob, name) {
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}
