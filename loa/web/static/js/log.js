// The broadcast log: GET /api/v1/log filtered by zone, class and time; CSV from /api/v1/log.csv.
import { api, errorText, loadMe } from "./api.js";
import { currentLang, formatDuration, formatTime, initI18n, t } from "./i18n.js";
import { el, initHeader, notice } from "./ui.js";
import { ZoneTree } from "./zones.js";

let tree = new ZoneTree([]);
let entries = [];

/** Did the broadcast reach the zone? A target zone above it, at it or below it. */
function reaches(entry, zone, endpointZones) {
  const inside = tree.subtree(zone);
  for (const target of entry.targets.zones) {
    if (inside.has(target) || tree.subtree(target).has(zone)) return true;
  }
  return entry.targets.endpoints.some((id) => inside.has(endpointZones.get(id)));
}

function filters() {
  const since = document.getElementById("f-from").value;
  const until = document.getElementById("f-to").value;
  return {
    zone: document.getElementById("f-zone").value,
    klass: document.getElementById("f-class").value,
    since: since ? new Date(since).getTime() / 1000 : null,
    until: until ? new Date(until).getTime() / 1000 : null,
  };
}

function csvHref(f) {
  const params = new URLSearchParams();
  if (f.zone) params.set("zone", f.zone);
  if (f.klass) params.set("class", f.klass);
  if (f.since != null) params.set("since", String(Math.floor(f.since)));
  if (f.until != null) params.set("until", String(Math.ceil(f.until)));
  params.set("lang", currentLang()); // the headers, classes and outcomes in the page's words
  return `/api/v1/log.csv?${params}`;
}

let endpointZones = new Map();

// Why it ended, and an interruption by a server restart (loa.onair): when, and how long.
function stateNote(e) {
  const parts = [];
  if (e.reason && e.reason !== e.state && !e.reason.startsWith("interrupted")) parts.push(e.reason);
  if (e.interrupted_at != null) {
    parts.push(
      e.resumed_at != null
        ? t("log.interrupted", { at: formatTime(e.interrupted_at), gap: formatDuration(e.resumed_at - e.interrupted_at) })
        : t("log.interrupted_lost", { at: formatTime(e.interrupted_at) }),
    );
  }
  return parts.length ? ` (${parts.join("; ")})` : "";
}

function render() {
  const f = filters();
  document.getElementById("csv-link").href = csvHref(f);
  const shown = entries.filter((e) => {
    const when = e.started_at ?? e.requested_at;
    if (f.klass && e.class !== f.klass) return false;
    if (f.since != null && when < f.since) return false;
    if (f.until != null && when > f.until) return false;
    return !f.zone || reaches(e, f.zone, endpointZones);
  });
  document.getElementById("log-count").textContent = t("log.count", { n: shown.length, total: entries.length });
  document.getElementById("log-rows").replaceChildren(
    ...shown.map((e) => {
      const duration = e.started_at && e.ended_at ? e.ended_at - e.started_at : null;
      const targets = e.targets.zones.map((z) => tree.name(z));
      if (e.targets.endpoints.length) targets.push(t("active.endpoints", { n: e.targets.endpoints.length }));
      const heard = Object.keys(e.heard_s || {}).filter((id) => e.heard_s[id] > 0);
      return el(
        "tr",
        { class: e.class === "emergency" ? "emergency" : "", dataset: { id: e.id } },
        el("td", { "data-label": t("log.when") }, formatTime(e.started_at ?? e.requested_at)),
        el("td", { "data-label": t("log.what") }, e.what),
        el(
          "td",
          { "data-label": t("log.class") },
          el("span", { class: `pill ${e.class === "emergency" ? "pill-emergency" : "pill-class"}` }, t(`class.${e.class}`)),
        ),
        el("td", { "data-label": t("log.targets") }, targets.join(", ")),
        el("td", { "data-label": t("log.by") }, e.created_by),
        el("td", { "data-label": t("log.duration") }, formatDuration(duration)),
        el("td", { "data-label": t("log.heard"), title: heard.join(", ") }, t("log.heard_n", { n: e.endpoints_heard })),
        el("td", { "data-label": t("log.state") }, t(`bcstate.${e.state}`), stateNote(e)),
      );
    }),
  );
}

async function reload() {
  try {
    const [log, zones, eps] = await Promise.all([api("GET", "/log"), api("GET", "/zones"), api("GET", "/endpoints")]);
    entries = log.entries;
    tree = new ZoneTree(zones.zones);
    endpointZones = new Map(eps.endpoints.map((ep) => [ep.id, ep.zone]));
    const select = document.getElementById("f-zone");
    const keep = select.value;
    select.replaceChildren(
      el("option", { value: "" }, t("log.all")),
      ...tree.walk().map(({ id, depth }) => el("option", { value: id }, `${"\u00a0\u00a0".repeat(depth)}${tree.name(id)}`)),
    );
    select.value = keep;
    render();
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function main() {
  await initI18n();
  try {
    initHeader(await loadMe());
  } catch (err) {
    notice(errorText(err), "error");
    return;
  }
  document.getElementById("log-filters").addEventListener("input", render);
  document.getElementById("log-filters").addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("f-reload").addEventListener("click", reload);
  document.addEventListener("loa:lang", reload);
  await reload();
}

main();
