// WHIP and WHEP from the pages (RFC 9725): an offer with every candidate in it (the server
// takes no trickle ICE), POSTed as application/sdp with the session's CSRF token; the answer
// and the session's Location come back; DELETE there ends it.
import { ApiError, csrfToken } from "./api.js";

const GATHER_MS = 3000;

/** A peer connection for an intranet: no STUN or TURN server (nothing outside to reach). */
export function newPeerConnection() {
  return new RTCPeerConnection({ iceServers: [] });
}

/** Put Opus first wherever the browser lets us choose (the relay speaks only Opus). */
export function preferOpus(transceiver) {
  const caps = globalThis.RTCRtpSender?.getCapabilities?.("audio") || globalThis.RTCRtpReceiver?.getCapabilities?.("audio");
  if (!caps || !transceiver.setCodecPreferences) return;
  const opus = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "audio/opus");
  if (opus.length) transceiver.setCodecPreferences(opus);
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    // Host candidates come in milliseconds; never wait long for ones that will not come.
    const timer = setTimeout(done, GATHER_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function errorOf(resp) {
  let data = null;
  if ((resp.headers.get("Content-Type") || "").includes("json")) data = await resp.json().catch(() => null);
  const err = (data && data.error) || {};
  return new ApiError(resp.status, err.code || `http_${resp.status}`, err.message || resp.statusText, err);
}

/** Offer → POST path (under /api/v1) → answer applied. Returns the session's Location. */
export async function negotiate(pc, path, { timeoutMs = 20000, onCreated = null } = {}) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Accept: "application/sdp", "X-CSRF-Token": csrfToken() },
      body: pc.localDescription.sdp,
      credentials: "same-origin",
      signal: controller.signal,
    });
  } catch (err) {
    throw new ApiError(0, err.name === "AbortError" ? "timeout" : "network", String(err));
  } finally {
    clearTimeout(timer);
  }
  if (resp.status !== 201) throw await errorOf(resp);
  const location = resp.headers.get("Location");
  const answer = await resp.text();
  if (!location || !answer.startsWith("v=0")) throw new ApiError(resp.status, "bad_answer", "no SDP answer or Location");
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  if (onCreated) onCreated(resp);
  return new URL(location, new URL(`/api/v1${path}`, window.location.href)).pathname;
}

/** DELETE the session (keepalive: it still goes out while the page unloads). 404 is fine:
 * the server already ended it. */
export async function endSession(location, { keepalive = false } = {}) {
  if (!location) return;
  let resp;
  try {
    resp = await fetch(location, {
      method: "DELETE",
      headers: { "X-CSRF-Token": csrfToken() },
      credentials: "same-origin",
      keepalive,
    });
  } catch (err) {
    throw new ApiError(0, "network", String(err));
  }
  if (!resp.ok && resp.status !== 404) throw await errorOf(resp);
}

/** Resolves when the connection is up; rejects when it fails or closes first. */
export function connected(pc, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new ApiError(0, "ice_failed", "connection timed out")), timeoutMs);
    function finish(err) {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
      if (err) reject(err);
      else resolve();
    }
    function check() {
      const s = pc.connectionState;
      if (s === "connected") finish();
      else if (s === "failed" || s === "closed") finish(new ApiError(0, "ice_failed", `connection ${s}`));
    }
    pc.addEventListener("connectionstatechange", check);
    check();
  });
}
