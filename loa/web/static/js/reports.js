// Reports upward: per zone and per pole over a period (played vs requested air time,
// emergencies, availability) from /api/v1/reports/*, with CSV downloads of the same figures.
import { api, errorText, loadMe } from "./api.js";
import { currentLang, initI18n, t } from "./i18n.js";
import { el, initHeader, notice } from "./ui.js";

const DAY_S = 86400;
const zoneNames = new Map(); // zone id → name, for the poles' rows

function isoDate(unix) {
  const d = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function localMidnight(value) {
  // "YYYY-MM-DD" as the start of that day in the browser's time zone, in Unix seconds.
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).getTime() / 1000;
}

function minutes(seconds) {
  return (seconds / 60).toFixed(1);
}

function pct(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} %`;
}

function query() {
  const since = localMidnight(document.getElementById("f-since").value);
  const until = localMidnight(document.getElementById("f-until").value) + DAY_S;
  const zone = document.getElementById("f-zone").value;
  const params = new URLSearchParams({ since: String(since), until: String(until) });
  if (zone) params.set("zone", zone);
  return params;
}

function cells(r, first) {
  return [
    ...first,
    el("td", { "data-label": t("reports.broadcasts") }, String(r.broadcasts)),
    el("td", { "data-label": t("reports.emergencies") }, String(r.emergencies)),
    el("td", { "data-label": t("reports.played") }, minutes(r.played_s)),
    el("td", { "data-label": t("reports.requested") }, minutes(r.requested_s)),
    el("td", { "data-label": t("reports.availability") }, pct(r.availability_pct)),
  ];
}

function fill(id, rows, columns) {
  const body = rows.length
    ? rows
    : [el("tr", {}, el("td", { colspan: columns, class: "muted" }, t("reports.none")))];
  document.getElementById(id).replaceChildren(...body);
}

async function load() {
  const params = query();
  // The CSV's column headers in the page's language (the server's default is Vietnamese).
  const csv = `${params}&format=csv&lang=${currentLang()}`;
  document.getElementById("csv-zones").href = `/api/v1/reports/zones?${csv}`;
  document.getElementById("csv-endpoints").href = `/api/v1/reports/endpoints?${csv}`;
  try {
    const [zones, poles] = await Promise.all([
      api("GET", `/reports/zones?${params}`),
      api("GET", `/reports/endpoints?${params}`),
    ]);
    fill(
      "zone-rows",
      zones.zones.map((z) =>
        el("tr", {}, ...cells(z, [
          el("td", { "data-label": t("log.zone") }, z.name),
          el("td", { "data-label": t("reports.endpoints") }, String(z.endpoints)),
        ])),
      ),
      7,
    );
    fill(
      "endpoint-rows",
      poles.endpoints.map((e) =>
        el("tr", {}, ...cells(e, [
          el("td", { "data-label": t("reports.pole") }, e.name),
          el("td", { "data-label": t("log.zone") }, zoneNames.get(e.zone) ?? e.zone),
        ])),
      ),
      7,
    );
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function main() {
  await initI18n();
  try {
    initHeader(await loadMe());
    const { zones } = await api("GET", "/zones");
    const select = document.getElementById("f-zone");
    for (const z of zones) {
      zoneNames.set(z.id, z.name);
      select.append(el("option", { value: z.id }, z.name));
    }
  } catch (err) {
    notice(errorText(err), "error");
    return;
  }
  const today = Date.now() / 1000;
  document.getElementById("f-since").value = isoDate(today - 6 * DAY_S);
  document.getElementById("f-until").value = isoDate(today);
  document.getElementById("report-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  document.addEventListener("loa:lang", load);
  await load();
}

main();
