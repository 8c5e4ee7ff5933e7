// The JSON API from the pages: session cookie, CSRF header on every change, errors in words.
import { has, t } from "./i18n.js";

let csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

export class ApiError extends Error {
  constructor(status, code, message, fields = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

/** fetch /api/v1{path}; body is JSON, or a Blob/File sent raw. Throws ApiError. */
export async function api(method, path, body, { timeoutMs = 30000 } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = body.type || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: payload,
      credentials: "same-origin",
      signal: controller.signal,
    });
  } catch (err) {
    throw new ApiError(0, err.name === "AbortError" ? "timeout" : "network", String(err));
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if ((resp.headers.get("Content-Type") || "").includes("json")) {
    data = await resp.json().catch(() => null);
  }
  if (resp.status === 401 && path !== "/me") {
    toLogin();
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || `http_${resp.status}`, err.message || resp.statusText, err);
  }
  return data;
}

/** The signed-in user: GET /api/v1/me (it also carries the CSRF token), else the page's copy. */
export async function loadMe() {
  const embedded = JSON.parse(document.body.dataset.user || "null");
  try {
    const me = await api("GET", "/me");
    if (me && me.csrf) csrf = me.csrf;
    return me;
  } catch (err) {
    if (err.status === 401) {
      toLogin();
      throw err;
    }
    if (embedded) return embedded;
    throw err;
  }
}

export function csrfToken() {
  return csrf;
}

/** An API error in the reader's language: a known code's sentence, else the server's message. */
export function errorText(err) {
  if (err instanceof ApiError) {
    const key = `error.${err.code}`;
    if (has(key)) {
      const detail = err.code === "conflict" || err.code === "bad_request" || err.code === "bad_media";
      return detail && err.message ? `${t(key)} (${err.message})` : t(key);
    }
    return err.message || t("error.unknown");
  }
  return `${t("error.unknown")} (${err && err.message ? err.message : err})`;
}
