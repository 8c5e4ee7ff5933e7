// The selected zone's TTS voice on the dashboard (North, Central, South, or its parent's):
// PATCH /zones/{id} {voice}; shown to those who may edit the zone (admins; an operator for the
// zones inside their own).
import { api, errorText } from "./api.js";
import { t } from "./i18n.js";
import { el, notice } from "./ui.js";
import { VOICES } from "./media.js";

function voiceName(id) {
  const found = VOICES.find(([v]) => v === id);
  return found ? t(found[1]) : id;
}

export function mayEdit(state, id) {
  const me = state.me;
  if (!me || !id) return false;
  if (me.role === "admin") return true;
  return me.role === "operator" && me.zone !== id && state.tree.subtree(me.zone).has(id);
}

/** Show the control for the selected zone (hidden when none is selected or it is not the
 * reader's to change); ``reload`` fetches the zones again after a change. */
export function renderZoneVoice(state, reload) {
  const box = document.getElementById("zone-voice");
  const select = document.getElementById("zone-voice-select");
  const id = state.selectedZone;
  box.hidden = !mayEdit(state, id);
  if (box.hidden) return;
  const zone = state.tree.byId.get(id);
  const parent = zone.parent ? state.tree.byId.get(zone.parent) : null;
  // What "inherit" would give: the parent's voice (the zone's own, when it has none itself).
  const inherited = zone.voice ? parent?.effective_voice ?? "vi" : zone.effective_voice ?? "vi";
  const options = [
    el("option", { value: "" }, t("voice.inherit", { voice: voiceName(inherited) })),
    ...VOICES.map(([v, key]) => el("option", { value: v }, t(key))),
  ];
  select.replaceChildren(...options);
  select.value = zone.voice ?? "";
  select.onchange = async () => {
    try {
      await api("PATCH", `/zones/${encodeURIComponent(id)}`, { voice: select.value || null });
      notice(t("zones.voice_saved", { zone: state.tree.name(id) }));
      await reload();
    } catch (err) {
      notice(errorText(err), "error");
      select.value = zone.voice ?? "";
    }
  };
}
