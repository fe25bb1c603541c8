// Texts and number formats of the portal: Vietnamese by default, English at a click.
const TEXTS = {
  vi: {
    skip: "Bỏ qua, tới nội dung",
    brand: "Đề án 06 · chỉ tiêu các cấp",
    search_label: "Tìm đơn vị (gõ không dấu được)",
    search_placeholder: "vd. ben luc",
    search_none: "Không tìm thấy đơn vị nào",
    key_summary: "Khóa API",
    key_label: "Khóa API (chỉ giữ trong phiên trình duyệt này)",
    key_save: "Dùng khóa",
    key_forget: "Quên khóa",
    key_set: "Đang dùng khóa đã nhập.",
    key_none: "Chưa có khóa.",
    key_anonymous: "Chưa có khóa: đang đọc công khai.",
    key_needed: "Cần khóa API để đọc số liệu: mở «Khóa API» ở đầu trang và dán khóa.",
    key_refused: "Khóa không được chấp nhận hoặc không được đọc đơn vị này.",
    not_found: "Không có đơn vị này (hoặc khóa không được đọc nó).",
    failed: "Không đọc được số liệu",
    synthetic: "Dữ liệu MINH HỌA, do máy tạo ra (tổng hợp): không phải số liệu thật của địa phương nào.",
    crumbs: "Đường dẫn",
    edition: "Phiên bản địa giới",
    edition_2025: "2025 (34 tỉnh)",
    edition_legacy: "Trước 1/7/2025 (63 tỉnh)",
    period: "Kỳ",
    indicator: "Chỉ tiêu (bảng xếp hạng, biểu đồ, bản đồ)",
    export_csv: "Tải CSV",
    export_xlsx: "Tải Excel",
    partial: "Kỳ này chưa kết thúc: số liệu còn có thể thay đổi.",
    partial_short: "tạm",
    cards: "Chỉ tiêu của đơn vị",
    cards_empty: "Không có số liệu cho kỳ này.",
    cards_more: (n) => `${n} chỉ tiêu khác chưa có số liệu kỳ này.`,
    children: "Đơn vị trực thuộc, xếp hạng",
    children_none: "Đơn vị này không có đơn vị trực thuộc.",
    children_note: (r, t) => `${r}/${t} đơn vị có số liệu.`,
    children_table: "Bảng các đơn vị trực thuộc",
    series: "Diễn biến qua các kỳ",
    series_note: "Trước 1/7/2025, số liệu của đơn vị 2025 được quy đổi từ các đơn vị cũ hợp thành (vòng rỗng); ước tính khi đơn vị cũ bị chia (hình thoi).",
    map: "Bản đồ các đơn vị trực thuộc",
    map_note: "Mỗi điểm là trụ sở một đơn vị (toạ độ từ vietnamadminunits), màu và cỡ theo giá trị.",
    map_none: "Không có toạ độ cho các đơn vị này.",
    quality: "Cảnh báo chất lượng số liệu",
    quality_none: "Không có cảnh báo nào đang mở.",
    quality_more: "Còn cảnh báo khác, ít quan trọng hơn (xem API /v1/units/{mã}/quality).",
    importance: { high: "quan trọng", medium: "trung bình", low: "thấp" },
    flag_rule: (code, imp, l, r) => `${code} (${imp}): ${l} và ${r}`,
    flag_outlier: (z) => `bất thường, z = ${z}`,
    flag_constant: "bất thường: lệch khỏi chuỗi số không đổi",
    rule_sides: (rule, l, r) => `cần ${rule}; thực tế ${l} và ${r}`,
    outlier_sides: (x, m, z, stock) => `${stock ? "mức tăng" : "giá trị"} ${x}, trung vị các kỳ trước ${m} (z = ${z})`,
    outlier_constant: (x, m, _z, stock) => `${stock ? "mức tăng" : "giá trị"} ${x}, trong khi ${stock ? "mức tăng" : "giá trị"} các kỳ trước đều là ${m}`,
    checked: "đã kiểm tra",
    checked_by: (by, at, comment) => `Đã kiểm tra: ${by}, ${at}${comment ? ` — “${comment}”` : ""}`,
    footer: "Cổng tham chiếu của d06: chỉ đọc API công khai v1.",
    level: { nation: "Quốc gia", province: "Tỉnh/thành", district: "Huyện/quận", commune: "Xã/phường" },
    edition_name: { "2025": "địa giới 2025", legacy: "địa giới trước 1/7/2025" },
    children_count: (n) => `${n} đơn vị trực thuộc`,
    formed_from: "Hình thành từ",
    went_into: "Đã nhập vào",
    target: "Mục tiêu",
    target_met: "Đạt mục tiêu",
    target_gap: (g) => `Còn thiếu ${g}`,
    change: "So với kỳ trước",
    no_previous: "Kỳ trước chưa có số liệu",
    points: "điểm",
    completeness: (r, e) => `${r}/${e} đơn vị báo cáo`,
    reported_vs_computed: (r, c) => `Tự báo cáo ${r}; tổng cấp dưới ${c}`,
    reexpressed: "quy đổi",
    estimated: "ước tính",
    flags: (n) => `${n} cảnh báo`,
    rank: "Hạng",
    unit: "Đơn vị",
    value: "Giá trị",
    reporting: "Báo cáo",
    native: "Số liệu của đơn vị",
    reexpressed_exact: "Quy đổi (chính xác)",
    reexpressed_estimated: "Quy đổi (ước tính)",
    reform: "Sắp xếp 1/7/2025",
    no_value: "chưa có",
    selected_period: "Kỳ đang xem",
  },
  en: {
    skip: "Skip to content",
    brand: "Project 06 · indicators at every level",
    search_label: "Find a unit (diacritics optional)",
    search_placeholder: "e.g. ben luc",
    search_none: "No unit found",
    key_summary: "API key",
    key_label: "API key (kept for this browser session only)",
    key_save: "Use key",
    key_forget: "Forget key",
    key_set: "Using the key you entered.",
    key_none: "No key yet.",
    key_anonymous: "No key: reading the public data.",
    key_needed: "An API key is needed to read figures: open “API key” at the top and paste it.",
    key_refused: "The key was refused, or it may not read this unit.",
    not_found: "No such unit (or the key may not read it).",
    failed: "Could not read the figures",
    synthetic: "SYNTHETIC demonstration data, machine-generated: not any locality's real figures.",
    crumbs: "Breadcrumbs",
    edition: "Boundaries",
    edition_2025: "2025 (34 provinces)",
    edition_legacy: "Before 1 July 2025 (63 provinces)",
    period: "Period",
    indicator: "Indicator (ranking, chart, map)",
    export_csv: "Download CSV",
    export_xlsx: "Download Excel",
    partial: "This period has not ended: figures may still change.",
    partial_short: "partial",
    cards: "The unit's indicators",
    cards_empty: "No figures for this period.",
    cards_more: (n) => `${n} other indicators have no figure for this period.`,
    children: "Units below, ranked",
    children_none: "This unit has no units below it.",
    children_note: (r, t) => `${r} of ${t} units have a figure.`,
    children_table: "Table of the units below",
    series: "Across periods",
    series_note: "Before 1 July 2025 a 2025 unit's figures are re-expressed from the legacy units it was formed from (open circles); estimated where a legacy unit was divided (diamonds).",
    map: "Map of the units below",
    map_note: "Each point is a unit's seat (coordinates from vietnamadminunits), coloured and sized by value.",
    map_none: "No coordinates for these units.",
    quality: "Data-quality flags",
    quality_none: "No open flags.",
    quality_more: "More flags, less important, follow (see the API's /v1/units/{code}/quality).",
    importance: { high: "high", medium: "medium", low: "low" },
    flag_rule: (code, imp, l, r) => `${code} (${imp}): ${l} and ${r}`,
    flag_outlier: (z) => `outlier, z = ${z}`,
    flag_constant: "outlier: departs from a constant history",
    rule_sides: (rule, l, r) => `should hold: ${rule}; found ${l} and ${r}`,
    outlier_sides: (x, m, z, stock) => `${stock ? "increase" : "value"} ${x}, median of the previous periods ${m} (z = ${z})`,
    outlier_constant: (x, m, _z, stock) => `${stock ? "increase" : "value"} ${x}, where every previous ${stock ? "increase" : "value"} was ${m}`,
    checked: "checked",
    checked_by: (by, at, comment) => `Checked by ${by} on ${at}${comment ? `: “${comment}”` : ""}`,
    footer: "d06's reference portal: it reads only the public v1 API.",
    level: { nation: "Nation", province: "Province", district: "District", commune: "Commune" },
    edition_name: { "2025": "2025 boundaries", legacy: "boundaries before 1 July 2025" },
    children_count: (n) => `${n} units below`,
    formed_from: "Formed from",
    went_into: "Went into",
    target: "Target",
    target_met: "Target met",
    target_gap: (g) => `${g} short`,
    change: "Since previous period",
    no_previous: "No figure for the previous period",
    points: "pts",
    completeness: (r, e) => `${r}/${e} units reporting`,
    reported_vs_computed: (r, c) => `Own report ${r}; sum of units below ${c}`,
    reexpressed: "re-expressed",
    estimated: "estimated",
    flags: (n) => `${n} flag${n === 1 ? "" : "s"}`,
    rank: "Rank",
    unit: "Unit",
    value: "Value",
    reporting: "Reporting",
    native: "The unit's own figures",
    reexpressed_exact: "Re-expressed (exact)",
    reexpressed_estimated: "Re-expressed (estimated)",
    reform: "Reform, 1 July 2025",
    no_value: "none",
    selected_period: "Period shown",
  },
};

let lang = sessionStorage.getItem("d06-lang") === "en" ? "en" : "vi";
let formats = null;

function makeFormats() {
  const locale = lang === "vi" ? "vi-VN" : "en-GB";
  return {
    int: new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }),
    one: new Intl.NumberFormat(locale, { maximumFractionDigits: 1, minimumFractionDigits: 1 }),
    signedInt: new Intl.NumberFormat(locale, { maximumFractionDigits: 0, signDisplay: "exceptZero" }),
    signedOne: new Intl.NumberFormat(locale, { maximumFractionDigits: 1, minimumFractionDigits: 1, signDisplay: "exceptZero" }),
  };
}

export function language() { return lang; }

export function setLanguage(next) {
  lang = next;
  formats = null;
  sessionStorage.setItem("d06-lang", next);
  document.documentElement.lang = next;
}

export function t(key, ...args) {
  const text = TEXTS[lang][key];
  return typeof text === "function" ? text(...args) : text;
}

function fmt() { return formats || (formats = makeFormats()); }

// Percent as each language writes it: "97,3 %" in Vietnamese, "97.3%" in English.
export function percent(v, signed = false) {
  const n = (signed ? fmt().signedOne : fmt().one).format(v);
  return lang === "vi" ? `${n} %` : `${n}%`;
}

export function number(v, signed = false) {
  if (Math.abs(v) < 100 && !Number.isInteger(v)) {
    return (signed ? fmt().signedOne : fmt().one).format(v);
  }
  return (signed ? fmt().signedInt : fmt().int).format(v);
}

// A value as the indicator's unit reads: ratios and boolean coverage are served as percent.
export function value(v, indicator) {
  if (v === null || v === undefined) return "—";
  return isPercent(indicator) ? percent(v) : number(v);
}

export function isPercent(indicator) {
  return !!indicator && (indicator.measure === "ratio" || indicator.measure === "boolean");
}

export function indicatorName(indicator) {
  return indicator ? (lang === "vi" ? indicator.name_vi : indicator.name_en) : "";
}

// Plotly's decimal and thousands separators for the language.
export function separators() { return lang === "vi" ? ",." : ".,"; }

export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
}
