// The studio: speak live to chosen zones from the browser. Microphone → level meter →
// RTCPeerConnection (Opus) → WHIP; push-to-talk or on/off mutes the sent track (no
// renegotiation); the status WebSocket says which speakers hear us and what holds the others;
// a MediaRecorder keeps what went on air and uploads it to the media library on stop.
import { api, errorText, loadMe } from "./api.js";
import { checkedZones, zoneChecks } from "./broadcast.js";
import { formatDuration, formatTime, initI18n, t } from "./i18n.js";
import { connectStatus } from "./live.js";
import { loadMedia, mediaLabel, uploadMedia } from "./media.js";
import { CLIP_DB, LevelMeter } from "./meter.js";
import { el, initHeader, notice, showError } from "./ui.js";
import { connected, endSession, negotiate, newPeerConnection, preferOpus } from "./webrtc.js";
import { ZoneTree } from "./zones.js";

const PREFS = "loa.studio";
const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  tree: new ZoneTree([]),
  allowed: new Set(),
  counts: new Map(),
  endpoints: [],
  broadcasts: [],
  media: [],
};

// One broadcast at a time. phase: idle → connecting → live → stopping → idle.
const live = {
  phase: "idle",
  stream: null, // the microphone; the meter reads it
  sendTrack: null, // a clone of its track: muting it mutes the broadcast, not the meter
  pc: null,
  location: null,
  bcId: null,
  zones: [],
  startedAt: 0,
  seen: false,
  cancelled: false,
  micOn: true,
  held: false,
  recorder: null,
  chunks: [],
  wakeLock: null,
};
let meter = null;
let pendingUpload = null;
let zoneSignature = "";

// -- settings ---------------------------------------------------------------------------------
function prefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS) || "{}");
  } catch {
    return {};
  }
}

function savePrefs() {
  const data = { mode: mode(), record: $("studio-record").checked, voice: $("studio-voice").checked };
  try {
    localStorage.setItem(PREFS, JSON.stringify(data));
  } catch {
    // private mode: the settings last for this page
  }
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function canEmergency() {
  return state.me && (state.me.role === "admin" || Boolean(state.me.emergency_right));
}

// -- microphone --------------------------------------------------------------------------------
class MicError extends Error {
  constructor(key) {
    super(key);
    this.key = key;
  }
}

async function microphone() {
  if (live.stream && live.stream.getAudioTracks().some((tr) => tr.readyState === "live")) return live.stream;
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) throw new MicError("studio.err.insecure");
  const voice = $("studio-voice").checked;
  const audio = { channelCount: 1, echoCancellation: voice, noiseSuppression: voice, autoGainControl: voice };
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
  } catch (err) {
    const key = {
      NotAllowedError: "studio.err.mic_denied",
      SecurityError: "studio.err.mic_denied",
      NotFoundError: "studio.err.mic_none",
      OverconstrainedError: "studio.err.mic_none",
      NotReadableError: "studio.err.mic_busy",
      AbortError: "studio.err.mic_busy",
    }[err.name];
    throw key ? new MicError(key) : err;
  }
  meter.attach(live.stream);
  return live.stream;
}

function releaseMicrophone() {
  meter.detach();
  $("meter-label").textContent = t("studio.meter.off");
  $("meter-clip").hidden = true;
  for (const track of live.stream?.getTracks() || []) track.stop();
  live.stream = null;
}

function describe(err) {
  return err instanceof MicError ? t(err.key) : errorText(err);
}

async function testMicrophone() {
  showError($("studio-error"), "");
  try {
    await microphone();
    renderTalk();
  } catch (err) {
    showError($("studio-error"), describe(err));
  }
}

// -- talking -------------------------------------------------------------------------------------
function talking() {
  return mode() === "toggle" ? live.micOn : live.held;
}

function applyTalk() {
  if (live.sendTrack) live.sendTrack.enabled = live.phase === "live" && talking();
  renderTalk();
}

function press() {
  if (mode() === "ptt") {
    live.held = true;
    if (live.phase === "idle") goLive();
  } else if (live.phase === "idle") {
    live.micOn = true;
    goLive();
  } else if (live.phase === "live") {
    live.micOn = !live.micOn;
  }
  applyTalk();
}

function release() {
  if (!live.held) return;
  live.held = false;
  applyTalk();
}

function initTalkControls() {
  const button = $("talk");
  button.addEventListener("pointerdown", (event) => {
    if (mode() !== "ptt" || event.button !== 0) return;
    button.setPointerCapture?.(event.pointerId);
    press();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) button.addEventListener(type, release);
  button.addEventListener("click", () => {
    if (mode() === "toggle") press();
  });
  button.addEventListener("contextmenu", (event) => event.preventDefault()); // long press on phones
  const typing = (target) => target.matches?.("input[type=text], input[type=checkbox], textarea, select, [contenteditable]");
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault(); // also keeps a focused button from "clicking" on key up
    if (!event.repeat) press();
  });
  document.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    release();
  });
  window.addEventListener("blur", release); // a key released in another window never comes back
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      live.micOn = false; // changing the mode on air never opens the microphone by itself
      live.held = false;
      savePrefs();
      applyTalk();
    });
  }
}

// -- going live and stopping ---------------------------------------------------------------------
function whipPath(zones) {
  const klass = $("studio-class").value;
  const name = $("studio-name").value.trim() || t("studio.default_name", { user: state.me.username });
  const params = new URLSearchParams({
    zones: zones.join(","),
    class: klass,
    chime: $("studio-chime").checked ? "1" : "0",
    name: name.slice(0, 200),
  });
  return `/whip?${params}`;
}

function checkCancelled() {
  if (live.cancelled) throw new DOMException("stopped while connecting", "AbortError");
}

async function goLive() {
  const errorBox = $("studio-error");
  showError(errorBox, "");
  const zones = checkedZones($("studio-zones"));
  if (!zones.length) {
    showError(errorBox, t("bc.need_zone"));
    return;
  }
  Object.assign(live, { phase: "connecting", zones, bcId: null, seen: false, cancelled: false });
  render();
  try {
    const stream = await microphone();
    checkCancelled();
    live.sendTrack = stream.getAudioTracks()[0].clone();
    live.sendTrack.enabled = false;
    live.pc = newPeerConnection();
    const transceiver = live.pc.addTransceiver(live.sendTrack, { direction: "sendonly" });
    preferOpus(transceiver);
    // The broadcast id is the server's: the answer names it, so the page finds itself in the status.
    const onCreated = (resp) => { live.bcId = resp.headers.get("X-Loa-Broadcast"); };
    live.location = await negotiate(live.pc, whipPath(zones), { onCreated });
    checkCancelled();
    await connected(live.pc);
    checkCancelled();
    live.pc.addEventListener("connectionstatechange", onConnectionState);
    live.phase = "live";
    live.startedAt = Date.now();
    if ($("studio-record").checked) startRecorder();
    holdScreen();
    applyTalk();
    render();
  } catch (err) {
    const cancelled = live.cancelled;
    await finish();
    if (!cancelled) showError(errorBox, describe(err));
  }
}

function onConnectionState() {
  if (live.phase === "live" && ["failed", "closed"].includes(live.pc.connectionState)) {
    endedElsewhere("studio.ended.connection");
  }
}

/** The server, another operator or the network ended the broadcast: stop here, say so. */
function endedElsewhere(key) {
  if (live.phase !== "live") return;
  finish().then(() => notice(t(key), "error"));
}

async function stop() {
  if (live.phase === "connecting") {
    live.cancelled = true; // goLive tidies up at its next step
    return;
  }
  if (live.phase !== "live") return;
  await finish();
  notice(t("studio.stopped"));
}

/** End everything this page holds: the WHIP session, the connection, the microphone; then
 * upload the recording. Safe to call in any phase. */
async function finish() {
  live.phase = "stopping";
  render();
  const recording = await stopRecorder();
  try {
    await endSession(live.location);
  } catch (err) {
    notice(errorText(err), "error");
  }
  live.pc?.close();
  live.sendTrack?.stop();
  releaseMicrophone();
  live.wakeLock?.release().catch(() => {});
  Object.assign(live, { phase: "idle", pc: null, location: null, sendTrack: null, held: false, wakeLock: null });
  render();
  if (recording) await upload(recording);
}

async function holdScreen() {
  try {
    live.wakeLock = (await navigator.wakeLock?.request("screen")) || null;
  } catch {
    live.wakeLock = null; // not offered over plain HTTP or on this browser: the screen may dim
  }
}

// -- recording -----------------------------------------------------------------------------------
const RECORD_TYPES = [
  ["audio/webm;codecs=opus", "webm"],
  ["audio/ogg;codecs=opus", "ogg"],
  ["audio/webm", "webm"],
  ["audio/mp4", "m4a"],
];

function startRecorder() {
  if (!globalThis.MediaRecorder) {
    notice(t("studio.err.record"), "error");
    return;
  }
  const [mime, ext] = RECORD_TYPES.find(([m]) => MediaRecorder.isTypeSupported(m)) || ["", "webm"];
  try {
    // The sent track, not the microphone: the recording is what went on air (muted = silence).
    const recorder = new MediaRecorder(new MediaStream([live.sendTrack]), mime ? { mimeType: mime } : {});
    live.chunks = [];
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) live.chunks.push(event.data);
    });
    recorder.start(1000);
    live.recorder = { recorder, ext, started: new Date() };
  } catch (err) {
    notice(`${t("studio.err.record")} (${err.message})`, "error");
  }
}

function stopRecorder() {
  const rec = live.recorder;
  live.recorder = null;
  if (!rec) return Promise.resolve(null);
  return new Promise((resolve) => {
    const done = () => {
      const blob = new Blob(live.chunks, { type: rec.recorder.mimeType || "audio/webm" });
      live.chunks = [];
      const pad = (n) => String(n).padStart(2, "0");
      const d = rec.started;
      const stamp = `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
      resolve(blob.size ? new File([blob], `ghi-am-${stamp}.${rec.ext}`, { type: blob.type }) : null);
    };
    if (rec.recorder.state === "inactive") return done();
    rec.recorder.addEventListener("stop", done, { once: true });
    rec.recorder.stop();
  });
}

async function upload(file) {
  const status = $("upload-status");
  const retry = $("upload-retry");
  pendingUpload = file;
  retry.hidden = true;
  status.className = "small";
  status.textContent = t("bc.uploading", { name: file.name });
  try {
    const info = await uploadMedia(file);
    pendingUpload = null;
    status.textContent = t("studio.uploaded", { name: info.name || file.name, duration: formatDuration(Math.round(info.duration_s || 0)) });
    await refreshLibrary(info.id);
  } catch (err) {
    status.className = "small error-text";
    status.textContent = `${t("studio.err.upload")} ${errorText(err)}`;
    retry.hidden = false;
  }
}

async function refreshLibrary(fresh = null) {
  try {
    state.media = await loadMedia();
  } catch (err) {
    notice(errorText(err), "error");
    return;
  }
  const recent = [...state.media].sort((a, b) => (b.created_at || 0) - (a.created_at || 0)).slice(0, 10);
  $("library-empty").hidden = recent.length > 0;
  $("library").replaceChildren(
    ...recent.map((m) =>
      el(
        "li",
        { class: m.id === fresh ? "new" : "", dataset: { id: m.id } },
        el("span", { class: "what" }, mediaLabel(m)),
        el("span", { class: "meta" }, [m.created_by, m.created_at ? formatTime(m.created_at) : null].filter(Boolean).join(" · ")),
      ),
    ),
  );
}

// -- who hears us --------------------------------------------------------------------------------
function applyStatus(message) {
  state.endpoints = message.endpoints;
  state.broadcasts = message.broadcasts;
  state.counts = state.tree.counts(state.endpoints);
  const signature = [...state.counts].map(([id, c]) => `${id}:${c.total}:${c.online}`).join();
  if (signature !== zoneSignature) {
    zoneSignature = signature;
    zoneChecks($("studio-zones"), state, "studio-zone");
    lockZones();
  }
  if (live.phase === "live") {
    const mine = state.broadcasts.some((b) => b.id === live.bcId);
    if (mine) live.seen = true;
    else if (live.seen) return endedElsewhere("studio.ended.elsewhere");
  }
  renderHearing();
}

function hearingSummary() {
  const targets = state.tree.endpointsIn(live.zones, state.endpoints);
  const hearing = targets.filter((e) => e.online && e.playing === live.bcId);
  const held = new Map();
  for (const e of targets) {
    if (!e.online || !e.playing || e.playing === live.bcId) continue;
    held.set(e.playing, (held.get(e.playing) || 0) + 1);
  }
  return { targets, hearing, held, offline: targets.filter((e) => !e.online).length };
}

function renderHearing() {
  const box = $("hearing");
  box.hidden = live.phase !== "live";
  if (box.hidden) return;
  const { targets, hearing, held, offline } = hearingSummary();
  $("hearing-n").textContent = hearing.length;
  $("hearing-label").textContent = t("studio.hearing", { total: targets.length });
  const mine = state.broadcasts.find((b) => b.id === live.bcId);
  const parts = [];
  if (mine && mine.state !== "playing") parts.push(t(`bcstate.${mine.state}`));
  if (offline) parts.push(t("studio.offline", { n: offline }));
  $("hearing-state").textContent = parts.join(" · ");
  const names = new Map(state.broadcasts.map((b) => [b.id, b]));
  $("preempted").replaceChildren(
    ...[...held].map(([id, n]) => {
      const bc = names.get(id);
      const what = bc ? bc.what : id;
      const klass = bc ? t(`class.${bc.class}`) : "";
      return el("li", { class: bc?.class === "emergency" ? "emergency" : "" }, t("studio.preempted", { n, what, class: klass }));
    }),
  );
  $("hearing-list").replaceChildren(
    ...hearing.map((e) => el("li", {}, e.name, el("span", { class: "muted" }, ` · ${state.tree.name(e.zone)}`))),
  );
  renderOnAir(hearing.length);
}

// -- rendering -----------------------------------------------------------------------------------
function lockZones() {
  const busy = live.phase !== "idle";
  for (const input of document.querySelectorAll("#studio-form input, #studio-form select")) {
    if (input.name === "mode") continue; // the mode may change on air
    input.disabled = busy;
  }
}

function renderTalk() {
  const button = $("talk");
  const main = $("talk-main");
  const sub = $("talk-sub");
  const ptt = mode() === "ptt";
  const on = live.phase === "live" && talking();
  button.dataset.state = live.phase === "live" ? (on ? "on" : "muted") : live.phase;
  button.classList.toggle("emergency", $("studio-class").value === "emergency");
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.disabled = live.phase === "stopping";
  if (live.phase === "idle") {
    main.textContent = t(ptt ? "studio.golive.ptt" : "studio.golive");
    sub.textContent = "";
  } else if (live.phase === "connecting") {
    main.textContent = t("studio.connecting");
    sub.textContent = "";
  } else if (live.phase === "stopping") {
    main.textContent = t("studio.stopping");
    sub.textContent = "";
  } else if (ptt) {
    main.textContent = t(on ? "studio.talking" : "studio.hold");
    sub.textContent = t(on ? "studio.talking.sub" : "studio.hold.sub");
  } else {
    main.textContent = t(on ? "studio.mic_on" : "studio.mic_off");
    sub.textContent = t(on ? "studio.mic_on.sub" : "studio.mic_off.sub");
  }
  $("talk-hint").textContent = t(ptt ? "studio.hint.ptt" : "studio.hint.toggle");
  $("meter").classList.toggle("muted-send", live.phase === "live" && !on);
}

function renderOnAir(hearingCount) {
  const stack = $("studio-onair");
  if (live.phase !== "live") {
    stack.replaceChildren();
    return;
  }
  const emergency = $("studio-class").value === "emergency";
  const text = [
    live.zones.map((z) => state.tree.name(z)).join(", "),
    t("active.hearing", { n: hearingCount }),
    formatDuration((Date.now() - live.startedAt) / 1000),
  ].join(" · ");
  let banner = stack.querySelector(".onair");
  if (!banner) {
    banner = el(
      "div",
      { class: "onair studio-banner" },
      el("span", { class: "onair-title" }),
      el("span", { class: "onair-detail" }),
      el("button", { type: "button", class: "btn btn-stop", onclick: () => stop() }),
    );
    stack.replaceChildren(banner);
  }
  banner.classList.toggle("live", !emergency);
  banner.classList.toggle("muted", !talking());
  banner.querySelector(".onair-title").textContent = t(talking() ? "studio.onair" : "studio.onair.muted");
  banner.querySelector(".onair-detail").textContent = text;
  banner.querySelector(".btn-stop").textContent = t("em.stop");
}

function render() {
  renderTalk();
  lockZones();
  $("stop").hidden = live.phase === "idle";
  $("stop").disabled = live.phase === "stopping";
  $("mic-test").hidden = live.phase !== "idle" || Boolean(live.stream);
  renderHearing();
  if (live.phase !== "live") renderOnAir(0);
}

function initSettings() {
  const saved = prefs();
  if (saved.mode === "ptt") document.querySelector('input[name="mode"][value="ptt"]').checked = true;
  if (typeof saved.record === "boolean") $("studio-record").checked = saved.record;
  if (typeof saved.voice === "boolean") $("studio-voice").checked = saved.voice;
  const select = $("studio-class");
  if (canEmergency()) select.append(el("option", { value: "emergency", "data-i18n": "class.emergency" }, t("class.emergency")));
  select.addEventListener("change", () => {
    const emergency = select.value === "emergency";
    $("class-warning").hidden = !emergency;
    $("studio-chime").checked = emergency;
    renderTalk();
  });
  $("studio-record").addEventListener("change", savePrefs);
  $("studio-voice").addEventListener("change", () => {
    savePrefs();
    if (live.phase === "idle" && live.stream) releaseMicrophone(); // the next use asks anew
    render();
  });
  $("studio-form").addEventListener("submit", (event) => event.preventDefault());
}

async function loadInventory() {
  const [zones, eps, bcs] = await Promise.all([api("GET", "/zones"), api("GET", "/endpoints"), api("GET", "/broadcasts")]);
  state.tree = new ZoneTree(zones.zones);
  state.allowed = state.tree.allowed(state.me);
  applyStatus({ endpoints: eps.endpoints, broadcasts: bcs.broadcasts });
  if (!state.allowed.size) showError($("studio-error"), t("em.no_zones"));
  else if (state.allowed.size === 1) {
    // One zone to speak to: choose it already.
    const only = $("studio-zones").querySelector("input");
    if (only) only.checked = true;
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
  meter = new LevelMeter($("meter"), (rms, peak) => {
    $("meter-clip").hidden = peak < CLIP_DB;
    $("meter-label").textContent = t("studio.meter.level", { db: Math.round(rms) });
  });
  initSettings();
  initTalkControls();
  $("mic-test").addEventListener("click", testMicrophone);
  $("stop").addEventListener("click", () => stop());
  $("upload-retry").addEventListener("click", () => pendingUpload && upload(pendingUpload));
  render();
  try {
    await loadInventory();
  } catch (err) {
    notice(errorText(err), "error");
  }
  refreshLibrary();
  connectStatus(applyStatus);
  setInterval(() => live.phase === "live" && renderOnAir(hearingSummary().hearing.length), 1000);
  window.addEventListener("beforeunload", (event) => {
    if (live.phase !== "idle") event.preventDefault();
  });
  // Leaving the page ends the broadcast now rather than when the connection times out.
  window.addEventListener("pagehide", () => {
    if (live.location) endSession(live.location, { keepalive: true }).catch(() => {});
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && live.phase === "live" && !live.wakeLock) holdScreen();
  });
  document.addEventListener("loa:lang", () => {
    zoneSignature = "";
    applyStatus({ endpoints: state.endpoints, broadcasts: state.broadcasts });
    render();
    refreshLibrary();
  });
}

main();
