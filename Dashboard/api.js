// The dashboard's only way to atolld: the same API the SDK uses, with the signed-in key as the
// bearer. The key lives in this tab's session storage and nowhere else.

const KEY = "atoll.apiKey";

export function apiKey() { return sessionStorage.getItem(KEY); }
export function setApiKey(key) { key ? sessionStorage.setItem(KEY, key) : sessionStorage.removeItem(KEY); }

/** An error the API answered with: its message names what was wrong. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

/** One request; JSON in and out. `raw` sends a body as is (FormData, Blob). */
export async function api(method, path, { json, raw, as = "json" } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (raw !== undefined) {
    body = raw;
  }
  const response = await fetch(path, { method, headers, body });
  if (!response.ok) {
    let parsed = null;
    try { parsed = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, parsed);
  }
  if (as === "blob") return response.blob();
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Every sandbox of the organization, page after page (the list answers 200 at most at a time). */
export async function allSandboxes() {
  const all = [];
  let cursor = "";
  do {
    const page = await api("GET", `/api/sandbox?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    all.push(...page.items);
    cursor = page.nextCursor || "";
  } while (cursor);
  return all;
}

/**
 * A WebSocket on the toolbox. Browsers cannot set an Authorization header on a WebSocket, so the
 * key travels as a subprotocol token (`atoll.bearer.<key>`), which atolld accepts as the bearer
 * and never echoes; `protocols` are offered too (the server picks one of them).
 */
export function socket(path, protocols = []) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  return new WebSocket(url, [...protocols, `atoll.bearer.${apiKey()}`]);
}

export const escapeHTML = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

export const TRANSITIONS = new Set(["creating", "starting", "stopping", "archiving", "restoring", "destroying", "pausing", "resuming", "pending_build", "building_snapshot", "resizing"]);

export function stateBadge(state) {
  const kind = TRANSITIONS.has(state) ? "transition" : state;
  return `<span class="state ${escapeHTML(kind)}">${escapeHTML(state)}</span>`;
}
