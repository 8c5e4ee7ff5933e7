// Listen to a zone in the browser: WHEP (a recvonly RTCPeerConnection, POST /api/v1/whep?zone=)
// into an <audio> element, with a level meter; the zone's Ogg mount is the fallback link.
import { api, errorText, loadMe } from "./api.js";
import { initI18n, t } from "./i18n.js";
import { connectStatus } from "./live.js";
import { LevelMeter } from "./meter.js";
import { el, initHeader, notice, showError } from "./ui.js";
import { connected, endSession, negotiate, newPeerConnection, preferOpus } from "./webrtc.js";
import { ZoneTree } from "./zones.js";

const STORE = "loa.listen.zone";
const $ = (id) => document.getElementById(id);
const ogg = JSON.parse(document.body.dataset.ogg || "{}");

let tree = new ZoneTree([]);
let broadcasts = [];
let meter = null;
// phase: idle → connecting → playing; a session is its pc and the Location to DELETE.
const session = { phase: "idle", pc: null, location: null, zone: null, token: 0 };

function remembered() {
  try {
    return localStorage.getItem(STORE) || "";
  } catch {
    return "";
  }
}

function zone() {
  return $("listen-zone").value;
}

function setState(key, params = {}) {
  $("listen-state").textContent = key ? t(key, params) : "";
}

function render() {
  const busy = session.phase !== "idle";
  $("listen-play").hidden = busy;
  $("listen-stop").hidden = !busy;
  const link = ogg[zone()];
  $("ogg-link").hidden = !link;
  if (link) $("ogg-link").href = link;
  $("ogg-none").hidden = Boolean(link) || !zone();
  renderNow();
}

/** What is on air for the zone: broadcasts that target it or a zone above it. */
function renderNow() {
  const z = zone();
  if (!z) return;
  const above = new Set();
  for (let id = z; id && !above.has(id); id = tree.byId.get(id)?.parent) above.add(id);
  const on = broadcasts.filter((b) => !["pending", "paused"].includes(b.state) && b.targets.zones.some((x) => above.has(x)));
  $("listen-now").textContent = on.length
    ? t("listen.now", { what: on.map((b) => `${b.what} (${t(`class.${b.class}`)})`).join(", ") })
    : t("listen.now.none");
}

async function play() {
  const errorBox = $("listen-error");
  showError(errorBox, "");
  const z = zone();
  if (!z) return;
  const token = ++session.token;
  Object.assign(session, { phase: "connecting", zone: z });
  setState("listen.connecting");
  render();
  const audio = $("listen-audio");
  try {
    const pc = newPeerConnection();
    session.pc = pc;
    const transceiver = pc.addTransceiver("audio", { direction: "recvonly" });
    preferOpus(transceiver);
    pc.addEventListener("track", (event) => {
      audio.srcObject = new MediaStream([event.track]);
    });
    session.location = await negotiate(pc, `/whep?zone=${encodeURIComponent(z)}`);
    await connected(pc);
    if (token !== session.token) return;
    await audio.play();
    meter.attach(audio.srcObject);
    pc.addEventListener("connectionstatechange", () => {
      if (token === session.token && ["failed", "closed"].includes(pc.connectionState)) {
        stop().then(() => showError(errorBox, t("listen.lost")));
      }
    });
    session.phase = "playing";
    setState("listen.playing", { zone: tree.name(z) });
    render();
  } catch (err) {
    if (token !== session.token) return;
    await stop();
    showError(errorBox, err.name === "NotAllowedError" ? t("listen.err.autoplay") : errorText(err));
  }
}

async function stop() {
  session.token += 1;
  const { pc, location } = session;
  Object.assign(session, { phase: "idle", pc: null, location: null });
  meter.detach();
  const audio = $("listen-audio");
  audio.pause();
  audio.srcObject = null;
  pc?.close();
  setState("");
  render();
  try {
    await endSession(location);
  } catch (err) {
    notice(errorText(err), "error");
  }
}

async function loadZones() {
  const data = await api("GET", "/zones");
  tree = new ZoneTree(data.zones);
  const select = $("listen-zone");
  const keep = select.value || remembered();
  select.replaceChildren(
    ...tree.walk().map(({ id, depth }) => el("option", { value: id }, `${"\u00a0\u00a0".repeat(depth)}${tree.name(id)}`)),
  );
  if (tree.byId.has(keep)) select.value = keep;
  render();
}

async function main() {
  await initI18n();
  try {
    initHeader(await loadMe());
  } catch (err) {
    notice(errorText(err), "error");
    return;
  }
  meter = new LevelMeter($("meter"));
  $("listen-play").addEventListener("click", play);
  $("listen-stop").addEventListener("click", () => stop());
  $("listen-volume").addEventListener("input", (event) => {
    $("listen-audio").volume = Number(event.target.value) / 100;
  });
  $("listen-zone").addEventListener("change", () => {
    try {
      localStorage.setItem(STORE, zone());
    } catch {
      // private mode
    }
    if (session.phase !== "idle") stop().then(play);
    else render();
  });
  try {
    await loadZones();
  } catch (err) {
    notice(errorText(err), "error");
  }
  try {
    broadcasts = (await api("GET", "/broadcasts")).broadcasts;
  } catch (err) {
    notice(errorText(err), "error");
  }
  render();
  connectStatus((message) => {
    broadcasts = message.broadcasts;
    renderNow();
  });
  window.addEventListener("pagehide", () => {
    if (session.location) endSession(session.location, { keepalive: true }).catch(() => {});
  });
  document.addEventListener("loa:lang", () => {
    if (session.phase === "playing") setState("listen.playing", { zone: tree.name(session.zone) });
    else if (session.phase === "connecting") setState("listen.connecting");
    renderNow();
  });
}

main();
