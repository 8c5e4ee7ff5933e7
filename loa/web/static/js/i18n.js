// Vietnamese first, English on request; the choice is kept in localStorage.
const STORE = "loa.lang";
const LANGS = ["vi", "en"];
const LOCALES = { vi: "vi-VN", en: "en-GB" };
let lang = "vi";
let dict = {};

export function currentLang() {
  return lang;
}

export function locale() {
  return LOCALES[lang];
}

function stored() {
  try {
    const value = localStorage.getItem(STORE);
    return LANGS.includes(value) ? value : "vi";
  } catch {
    return "vi";
  }
}

async function load(which) {
  const resp = await fetch(`/static/i18n/${which}.json`, { credentials: "same-origin" });
  if (!resp.ok) throw new Error(`i18n ${which}: HTTP ${resp.status}`);
  return resp.json();
}

export async function initI18n() {
  lang = stored();
  dict = await load(lang);
  document.documentElement.lang = lang;
  apply(document);
  for (const button of document.querySelectorAll("[data-lang-toggle]")) {
    button.addEventListener("click", () => setLang(lang === "vi" ? "en" : "vi"));
  }
}

export async function setLang(which) {
  dict = await load(which);
  lang = which;
  try {
    localStorage.setItem(STORE, which);
  } catch {
    // private mode: the choice lasts for this page only
  }
  document.documentElement.lang = which;
  apply(document);
  document.dispatchEvent(new CustomEvent("loa:lang", { detail: which }));
}

export function has(key) {
  return Object.hasOwn(dict, key);
}

/** The text for key with {name} placeholders filled; the key itself if it is missing. */
export function t(key, params = {}) {
  const text = has(key) ? dict[key] : key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

const ATTRS = ["placeholder", "title", "aria-label"];

export function apply(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    if (el.dataset.i18n) el.textContent = t(el.dataset.i18n);
  }
  for (const attr of ATTRS) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
    }
  }
}

export function formatTime(unix, withDate = true) {
  if (unix == null) return "–";
  const opts = withDate
    ? { dateStyle: "short", timeStyle: "medium" }
    : { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Intl.DateTimeFormat(locale(), opts).format(new Date(unix * 1000));
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}
