// The dashboard: zone tree with counts, map, speakers, broadcasts and the emergency button,
// kept live by the status WebSocket.
import { api, errorText, loadMe } from "./api.js";
import { initBroadcastForm, renderActive, zoneChecks } from "./broadcast.js";
import { initEmergency, renderOnAir } from "./emergency.js";
import { initPrepared } from "./prepared.js";
import { highlightEndpoint, renderEndpoints, resetEndpointRows } from "./endpoints.js";
import { initI18n, t } from "./i18n.js";
import { connectStatus } from "./live.js";
import { drawMap } from "./map.js";
import { loadMedia } from "./media.js";
import { el, initHeader, notice } from "./ui.js";
import { renderZoneAudio } from "./zoneaudio.js";
import { renderZoneVoice } from "./zonevoice.js";
import { ZoneTree } from "./zones.js";

const state = {
  me: null,
  tree: new ZoneTree([]),
  allowed: new Set(),
  endpoints: [],
  broadcasts: [],
  counts: new Map(),
  totals: null,
  media: [],
  selectedZone: null,
  selectedEp: null,
  skew: 0,
  serverNow() {
    return Date.now() / 1000 + this.skew;
  },
  canBroadcast() {
    return Boolean(this.me) && this.me.role !== "viewer";
  },
  canEmergency() {
    return this.canBroadcast() && (this.me.role === "admin" || Boolean(this.me.emergency_right));
  },
  // A broadcast from a level above the user's (the province's emergency) is not theirs to
  // stop: the server answers 403, so no stop button.
  canStopFrom(bc) {
    if (!this.canBroadcast()) return false;
    return this.me.role === "admin" || (bc.origin_zone != null && this.allowed.has(bc.origin_zone));
  },
  addBroadcast(bc) {
    if (!this.broadcasts.some((b) => b.id === bc.id)) {
      this.broadcasts.push(withHearing(bc, this.endpoints));
      renderAll();
    }
  },
};
let emergency = null;
let zoneSignature = "";
let treeSignature = "";

function withHearing(bc, endpoints) {
  if (bc.hearing != null) return bc;
  const online = new Set(endpoints.filter((e) => e.online).map((e) => e.id));
  return { ...bc, hearing: (bc.listeners || []).filter((id) => online.has(id)).length };
}

function applyStatus(message) {
  state.endpoints = message.endpoints;
  state.broadcasts = message.broadcasts.map((bc) => withHearing(bc, message.endpoints));
  state.counts = state.tree.counts(state.endpoints);
  state.totals = message.counts || null;
  renderAll();
}

function renderCounts() {
  const eps = state.endpoints;
  const totals = state.totals || {
    online: eps.filter((e) => e.online).length,
    offline: eps.filter((e) => !e.online).length,
    playing: eps.filter((e) => e.online && e.playing).length,
  };
  for (const key of ["online", "offline", "playing"]) {
    document.getElementById(`count-${key}`).textContent = totals[key];
  }
}

function zoneItem(id) {
  const c = state.counts.get(id) || { online: 0, offline: 0, playing: 0 };
  const kids = state.tree.children.get(id);
  const row = el(
    "button",
    {
      type: "button",
      class: "zone-row",
      role: "treeitem",
      "aria-selected": state.selectedZone === id ? "true" : "false",
      dataset: { zone: id },
      onclick: () => {
        state.selectedZone = state.selectedZone === id ? null : id;
        renderAll();
      },
    },
    el("span", { class: "zname" }, state.tree.name(id)),
    el(
      "span",
      { class: "zc" },
      badge("online", c.online),
      badge("offline", c.offline),
      badge("playing", c.playing),
    ),
  );
  return el("li", {}, row, kids.length ? el("ul", { role: "group" }, kids.map(zoneItem)) : null);
}

/** A count in the zone tree, labelled: the column heads above the tree name each column,
 * and the badge itself says what it counts to a screen reader and on hover. */
function badge(kind, n) {
  const label = t(`counts.${kind}`);
  return el(
    "span",
    { class: `pill pill-${kind}${n ? "" : " pill-zero"}`, title: `${label}: ${n}`, "aria-label": `${label}: ${n}` },
    kind === "playing" ? `▶ ${n}` : n,
  );
}

function visibleEndpoints() {
  const order = new Map(state.tree.walk().map(({ id }, i) => [id, i]));
  const list = state.selectedZone
    ? state.tree.endpointsIn([state.selectedZone], state.endpoints)
    : [...state.endpoints];
  return list.sort((a, b) => (order.get(a.zone) ?? 0) - (order.get(b.zone) ?? 0) || a.name.localeCompare(b.name));
}

/** The zones again (after a voice change: the zones below follow it). */
async function reloadZones() {
  const zones = await api("GET", "/zones");
  state.tree = new ZoneTree(zones.zones);
  state.counts = state.tree.counts(state.endpoints);
  renderAll();
}

function renderAll() {
  renderCounts();
  renderZoneVoice(state, reloadZones);
  renderZoneAudio(state, reloadZones);
  const tree = JSON.stringify([state.selectedZone, [...state.counts]]);
  if (tree !== treeSignature) {
    // Rebuilt only when something in it changed, so a tap is not lost to a push.
    treeSignature = tree;
    document.getElementById("zone-tree").replaceChildren(...state.tree.roots.map(zoneItem));
  }
  const visible = visibleEndpoints();
  document.getElementById("ep-filter").textContent = state.selectedZone
    ? `(${state.tree.name(state.selectedZone)})`
    : "";
  const classes = new Map(state.broadcasts.map((b) => [b.id, b.class]));
  const unplaced = drawMap(
    document.getElementById("map"),
    visible,
    classes,
    state.selectedEp,
    (id) => {
      state.selectedEp = id;
      renderAll();
      highlightEndpoint(id);
    },
    {
      tree: state.tree,
      // A numbered circle: show that zone (the map fits it, so its pins spread out).
      onZone: (zone) => {
        if (state.selectedZone === zone) return;
        state.selectedZone = zone;
        renderAll();
      },
    },
  );
  document.getElementById("map-all").hidden = !state.selectedZone;
  document.getElementById("map-note").textContent = unplaced ? t("map.unplaced", { n: unplaced }) : "";
  renderEndpoints(state, visible);
  renderActive(state);
  renderOnAir(state);
  const signature = [...state.counts].map(([id, c]) => `${id}:${c.total}:${c.online}`).join();
  if (signature !== zoneSignature) {
    zoneSignature = signature;
    if (state.canBroadcast()) zoneChecks(document.getElementById("bc-zones"), state, "bc-zone");
    emergency?.refresh();
  }
}

async function main() {
  await initI18n();
  try {
    state.me = await loadMe();
  } catch (err) {
    notice(errorText(err), "error");
    return;
  }
  initHeader(state.me);
  document.getElementById("map-all").addEventListener("click", () => {
    state.selectedZone = null;
    renderAll();
  });
  try {
    const [zones, eps, bcs] = await Promise.all([
      api("GET", "/zones"),
      api("GET", "/endpoints"),
      api("GET", "/broadcasts"),
    ]);
    state.tree = new ZoneTree(zones.zones);
    state.allowed = state.tree.allowed(state.me);
    applyStatus({ endpoints: eps.endpoints, broadcasts: bcs.broadcasts });
  } catch (err) {
    notice(errorText(err), "error");
  }
  const canEmergency = state.canEmergency() && state.allowed.size > 0;
  document.getElementById("emergency-area").hidden = !canEmergency;
  document.getElementById("broadcast-card").hidden = !(state.canBroadcast() && state.allowed.size);
  let form = null;
  const refreshMedia = async (keep) => {
    try {
      state.media = await loadMedia();
    } catch (err) {
      notice(errorText(err), "error");
    }
    form?.fillMedia(state.media, keep);
  };
  if (state.canBroadcast()) {
    form = initBroadcastForm(state, refreshMedia);
    zoneSignature = "";
    renderAll();
    await refreshMedia();
  }
  if (canEmergency) emergency = initEmergency(state);
  if (state.me.role === "admin") initPrepared(state); // the dialog's one-tap messages
  connectStatus((message) => {
    if (message.time) state.skew = message.time - Date.now() / 1000;
    applyStatus(message);
  });
  // Elapsed times tick between pushes.
  setInterval(() => {
    renderActive(state);
    renderOnAir(state);
  }, 1000);
  document.addEventListener("loa:lang", () => {
    resetEndpointRows();
    zoneSignature = "";
    treeSignature = "";
    renderAll();
  });
}

main();
