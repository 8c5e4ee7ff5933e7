// The speakers table: status, what plays, loss and jitter, volume and mute (PATCH /endpoints).
import { api, errorText } from "./api.js";
import { t } from "./i18n.js";
import { endpointState } from "./map.js";
import { qualityParts } from "./quality.js";
import { el, notice } from "./ui.js";

const rows = new Map();

async function patch(ep, body, row) {
  row.busy = true;
  try {
    const updated = await api("PATCH", `/endpoints/${encodeURIComponent(ep.id)}`, body);
    Object.assign(ep, updated);
  } catch (err) {
    notice(`${ep.name}: ${errorText(err)}`, "error");
  } finally {
    row.busy = false;
    update(row, ep, row.state);
  }
}

function makeRow(ep, state) {
  const row = { ep, state };
  row.dot = el("i", { class: "dot" });
  row.name = el("span", {});
  row.transport = el("small", { class: "muted" });
  row.zone = el("td", { "data-label": t("ep.zone") });
  row.playing = el("td", { "data-label": t("ep.playing") });
  row.quality = el("td", { class: "quality", "data-label": t("ep.quality") });
  row.range = el("input", {
    type: "range",
    min: 0,
    max: 100,
    step: 5,
    "aria-label": t("ep.volume_of", { name: ep.name }),
  });
  row.output = el("output", {});
  row.mute = el("button", { type: "button", class: "btn btn-small" });
  row.range.addEventListener("input", () => (row.output.textContent = row.range.value));
  row.range.addEventListener("change", () => patch(row.ep, { volume: Number(row.range.value) }, row));
  row.mute.addEventListener("click", () => patch(row.ep, { muted: !row.ep.muted }, row));
  row.tr = el(
    "tr",
    { dataset: { id: ep.id } },
    el("td", {}, el("div", { class: "ep-name" }, row.dot, row.name, row.transport)),
    row.zone,
    row.playing,
    row.quality,
    el("td", { "data-label": t("ep.volume") }, el("div", { class: "volume" }, row.range, row.output, row.mute)),
  );
  return row;
}

function update(row, ep, state) {
  row.ep = ep;
  row.state = state;
  const classes = new Map(state.broadcasts.map((b) => [b.id, b.class]));
  const st = endpointState(ep, classes);
  row.tr.className = `${ep.online ? "online" : "offline"}${state.selectedEp === ep.id ? " selected" : ""}`;
  row.dot.className = `dot dot-${st}`;
  row.dot.title = t(`state.${st === "online" ? "idle" : st}`);
  row.name.textContent = ep.name;
  row.transport.textContent = ep.online ? ep.transport || ep.kind : t("state.offline");
  row.zone.textContent = state.tree.name(ep.zone);
  const bc = state.broadcasts.find((b) => b.id === ep.playing);
  row.playing.replaceChildren(
    ep.playing && ep.online
      ? el("span", {}, el("span", { class: `pill ${bc?.class === "emergency" ? "pill-emergency" : "pill-playing"}` }, t(`class.${bc?.class ?? "live"}`)), " ", bc?.what ?? ep.playing)
      : "–",
  );
  const parts = qualityParts(ep, t);
  row.quality.replaceChildren(
    ...(parts.length
      ? parts.flatMap((p, i) => [i ? " · " : "", el("span", { class: p.bad ? "bad" : "" }, p.text)])
      : ["–"]),
  );
  const editable = state.canBroadcast() && state.allowed.has(ep.zone);
  row.range.disabled = !editable || row.busy;
  row.mute.disabled = !editable || row.busy;
  if (document.activeElement !== row.range && !row.busy) {
    row.range.value = ep.volume;
    row.output.textContent = ep.volume;
  }
  row.mute.textContent = ep.muted ? t("ep.unmute") : t("ep.mute");
  row.mute.setAttribute("aria-pressed", ep.muted ? "true" : "false");
}

export function renderEndpoints(state, visible) {
  const body = document.getElementById("endpoint-rows");
  const seen = new Set();
  for (const ep of visible) {
    let row = rows.get(ep.id);
    if (!row) {
      row = makeRow(ep, state);
      rows.set(ep.id, row);
    }
    update(row, ep, state);
    body.append(row.tr);
    seen.add(ep.id);
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
}

/** After a language switch the labels made in makeRow are rebuilt. */
export function resetEndpointRows() {
  for (const row of rows.values()) row.tr.remove();
  rows.clear();
}

export function highlightEndpoint(id) {
  const row = rows.get(id);
  if (row) row.tr.scrollIntoView({ block: "center", behavior: "smooth" });
}
