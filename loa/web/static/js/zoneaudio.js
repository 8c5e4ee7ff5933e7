// The selected zone's packet settings on the dashboard: packet duration (20/40/60 ms),
// RFC 2198 redundancy and playout delay, each its own or its parent's:
// PATCH /zones/{id} {frame_ms | redundancy | playout_delay_ms} (null: the parent's). Shown to
// those who may edit the zone, as the voice is.
import { api, errorText } from "./api.js";
import { t } from "./i18n.js";
import { el, notice } from "./ui.js";
import { mayEdit } from "./zonevoice.js";

const FRAMES = [20, 40, 60];
const DELAYS = [80, 150, 300, 500, 1000]; // offered; another value set through the API shows too
let shown = ""; // what the controls show now: rebuilt only when it changes, not on every push

function inheritedOf(state, zone, field) {
  // What "the parent's" would give: the parent's effective value (at the top: the server's,
  // which is the zone's own effective value when it sets none itself).
  const parent = zone.parent ? state.tree.byId.get(zone.parent) : null;
  if (parent?.effective_audio) return parent.effective_audio[field];
  return zone[field] == null ? zone.effective_audio?.[field] : null;
}

function words(field, value) {
  if (value == null) return "?";
  if (field === "redundancy") return t(value ? "zones.redundancy.on" : "zones.redundancy.off");
  return t("zones.ms", { ms: value });
}

function control(state, zone, field, values, reload) {
  const select = document.getElementById(`zone-${field.replace(/_/g, "-")}`);
  const own = zone[field];
  const inherited = inheritedOf(state, zone, field);
  const choices = own == null || values.includes(own) ? values : [...values, own];
  select.replaceChildren(
    el("option", { value: "" }, t("zones.inherit", { value: words(field, inherited) })),
    ...choices.map((v) => el("option", { value: String(v) }, words(field, v))),
  );
  select.value = own == null ? "" : String(own);
  select.onchange = async () => {
    const raw = select.value;
    const value = raw === "" ? null : field === "redundancy" ? raw === "true" : Number(raw);
    try {
      await api("PATCH", `/zones/${encodeURIComponent(zone.id)}`, { [field]: value });
      notice(t("zones.audio_saved", { zone: state.tree.name(zone.id) }));
      await reload();
    } catch (err) {
      notice(errorText(err), "error");
      select.value = own == null ? "" : String(own);
    }
  };
}

/** Show the controls for the selected zone (hidden when none is selected or it is not the
 * reader's to change); ``reload`` fetches the zones again after a change. */
export function renderZoneAudio(state, reload) {
  const box = document.getElementById("zone-audio");
  const id = state.selectedZone;
  box.hidden = !mayEdit(state, id);
  if (box.hidden) {
    shown = "";
    return;
  }
  const zone = state.tree.byId.get(id);
  const parent = zone.parent ? state.tree.byId.get(zone.parent) : null;
  const signature = JSON.stringify([id, zone.frame_ms, zone.redundancy, zone.playout_delay_ms,
    zone.effective_audio, parent?.effective_audio]);
  if (signature === shown) return;
  shown = signature;
  control(state, zone, "frame_ms", FRAMES, reload);
  control(state, zone, "redundancy", [true, false], reload);
  control(state, zone, "playout_delay_ms", DELAYS, reload);
}
