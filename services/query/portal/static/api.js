// The public v1 API, read as any portal would: a key pasted by the user (this browser session only) or none.
const KEY = "d06-key";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export function apiKey() { return sessionStorage.getItem(KEY) || ""; }
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") query.set(k, v);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export async function get(path, params) {
  const response = await fetch(url(path, params), { headers: headers() });
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).detail; } catch { /* not a problem+json body */ }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

export async function download(path, params) {
  const response = await fetch(url(path, params), { headers: headers() });
  if (!response.ok) throw new ApiError(response.status, "");
  return response.blob();
}

// What this deployment's API offers, from its own OpenAPI document: routes and parameters that other
// parts of d06 add (quality flags, file exports) are used where present and quietly left out where not,
// without probing them (a 404 would be an error in the browser's console).
export async function features() {
  const doc = await fetch("/openapi.json").then((r) => (r.ok ? r.json() : { paths: {} }), () => ({ paths: {} }));
  const paths = doc.paths || {};
  const params = (p) => ((paths[p] && paths[p].get && paths[p].get.parameters) || []).map((x) => x.name);
  return {
    quality: "/v1/units/{code}/quality" in paths,
    childrenFormat: params("/v1/units/{code}/children/values").includes("format"),
    exports: "/v1/exports" in paths,
  };
}
