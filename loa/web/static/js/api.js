// The JSON API from the pages: session cookie, CSRF header on every change, errors in words.
import { currentLang, has, t } from "./i18n.js";

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

/** A field's name in the reader's words: "variants[1].text" → field.text, else as given. */
function fieldName(path) {
  const key = `field.${String(path).replace(/\[\d+\]/g, "").split(".").pop()}`;
  return has(key) ? t(key) : path;
}

/** An error's parameters as text: lists joined, field paths named, the code and message left
 * out. */
function errorParams(fields) {
  const params = {};
  for (const [name, value] of Object.entries(fields || {})) {
    if (name === "code" || name === "message") continue;
    params[name] = Array.isArray(value) ? value.join(", ") : value ?? "";
  }
  if (fields && typeof fields.field === "string") params.field = fieldName(fields.field);
  return params;
}

/** An API error in the reader's language: the text of its code, filled with its parameters —
 * error.<code>.reason.<reason> when it carries a reason that has its own text, else
 * error.<code>.<parameter> when it carries a parameter that has its own text, else
 * error.<code>. The server's (English) message is shown only in the English UI (after the
 * text of a generic code) or for a code with no text at all. */
export function errorText(err) {
  if (err instanceof ApiError) {
    const params = errorParams(err.fields);
    const words = (key) => t(key, params).replace(/\s+/g, " ").trim();
    const reason = err.fields && err.fields.reason;
    if (typeof reason === "string" && has(`error.${err.code}.reason.${reason}`)) {
      return words(`error.${err.code}.reason.${reason}`);
    }
    for (const name of Object.keys(params)) {
      const key = `error.${err.code}.${name}`;
      if (has(key)) return words(key);
    }
    const key = `error.${err.code}`;
    if (has(key)) {
      const generic = err.code === "conflict" || err.code === "bad_request" || err.code === "bad_media";
      return generic && err.message && currentLang() === "en" ? `${t(key, params)} (${err.message})` : t(key, params);
    }
    return currentLang() === "en" && err.message ? err.message : t("error.unknown");
  }
  return `${t("error.unknown")} (${err && err.message ? err.message : err})`;
}
