// The media library: list (GET /media), upload (POST /media, raw body), the voices for TTS.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { el } from "./ui.js";

const REMEMBERED = "loa.media.uploaded";

export const VOICES = [
  ["vi", "voice.north"],
  ["vi-vn-x-central", "voice.central"],
  ["vi-vn-x-south", "voice.south"],
];

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(REMEMBERED) || "[]");
  } catch {
    return [];
  }
}

/** The library; servers without the listing route still offer what this browser uploaded. */
export async function loadMedia() {
  try {
    const data = await api("GET", "/media");
    return Array.isArray(data) ? data : data.media || [];
  } catch (err) {
    if (err.status === 404 || err.status === 405) return remembered();
    throw err;
  }
}

export async function uploadMedia(file) {
  const info = await api("POST", `/media?filename=${encodeURIComponent(file.name)}`, file, {
    timeoutMs: 600000,
  });
  const list = remembered().filter((m) => m.id !== info.id);
  list.push(info);
  try {
    localStorage.setItem(REMEMBERED, JSON.stringify(list.slice(-100)));
  } catch {
    // storage full or private mode: the server still has the file
  }
  return info;
}

export function mediaLabel(m) {
  const secs = Math.round(m.duration_s || 0);
  const len = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
  return `${m.name || m.id} (${len})`;
}

export function fillMediaSelect(select, media, keep = select.value) {
  const options = media.length
    ? media.map((m) => el("option", { value: m.id }, mediaLabel(m)))
    : [el("option", { value: "", disabled: true, selected: true }, t("bc.media.empty"))];
  select.replaceChildren(...options);
  if (keep && media.some((m) => m.id === keep)) select.value = keep;
}

/** The voice choices of a text source: first (and by default) the target zone's own voice
 * (value "": the source names none), then North, Central, South. */
export function fillVoiceSelect(select) {
  const keep = select.value;
  const zone = el("option", { value: "" }, t("voice.zone"));
  select.replaceChildren(zone, ...VOICES.map(([id, key]) => el("option", { value: id }, t(key))));
  select.value = keep || "";
}
