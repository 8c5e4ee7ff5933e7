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

/** An error's parameters as text: lists joined, the code and message left out. */
function errorParams(fields) {
  const params = {};
  for (const [name, value] of Object.entries(fields || {})) {
    if (name === "code" || name === "message") continue;
    params[name] = Array.isArray(value) ? value.join(", ") : value ?? "";
  }
  return params;
}

/** An API error in the reader's language: the text of its code, filled with its parameters
 * (error.<code>.<parameter> when the error carries one that has its own text, else
 * error.<code>); the server's (English) message only for a code with no text. */
export function errorText(err) {
  if (err instanceof ApiError) {
    const params = errorParams(err.fields);
    for (const name of Object.keys(params)) {
      const key = `error.${err.code}.${name}`;
      if (has(key)) return t(key, params).replace(/\s+/g, " ").trim();
    }
    const key = `error.${err.code}`;
    if (has(key)) {
      const detail = err.code === "conflict" || err.code === "bad_request" || err.code === "bad_media";
      return detail && err.message ? `${t(key, params)} (${err.message})` : t(key, params);
    }
    return err.message || t("error.unknown");
  }
  return `${t("error.unknown")} (${err && err.message ? err.message : err})`;
}
