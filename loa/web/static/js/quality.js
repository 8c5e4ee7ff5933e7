// A pole's link quality and playout step, in words for the speakers table: loss and jitter
// (its status, else its RTCP receiver report), the report's round trip, and whether it plays
// in step with the other poles (flagged beyond ±10 ms). No DOM: tests run it under node.

export const STEP_LIMIT_MS = 10;

function lossPct(status, reception) {
  const received = status.received ?? 0;
  const lost = status.lost ?? 0;
  if (received || lost) return (100 * lost) / (received + lost);
  if (reception?.fraction_lost != null) return 100 * reception.fraction_lost;
  return null;
}

function signed(ms) {
  return `${ms > 0 ? "+" : ms < 0 ? "−" : "±"}${Math.abs(ms).toFixed(1)}`;
}

/** [{text, bad}] for one endpoint as GET /endpoints shows it; tr(key, params) → words. */
export function qualityParts(ep, tr) {
  const status = ep.status || {};
  const reception = ep.reception;
  const parts = [];
  const loss = lossPct(status, reception);
  if (loss != null) parts.push({ text: tr("ep.loss", { pct: loss.toFixed(1) }), bad: loss >= 5 });
  const jitter = status.jitter_ms ?? reception?.jitter_ms;
  if (jitter != null && loss != null) parts.push({ text: tr("ep.jitter", { ms: Number(jitter).toFixed(0) }), bad: false });
  if (reception?.rtt_ms != null) parts.push({ text: tr("ep.rtt", { ms: Number(reception.rtt_ms).toFixed(0) }), bad: false });
  const error = status.playout_error_ms;
  if (status.synced === true && error != null) {
    const off = Math.abs(error) > STEP_LIMIT_MS;
    parts.push({ text: tr(off ? "ep.out_of_step" : "ep.in_step", { ms: signed(error) }), bad: off });
  } else if (ep.online && ep.playing && status.synced === false && status.clock_offset_ms !== undefined) {
    parts.push({ text: tr("ep.not_in_step"), bad: true });
  }
  return parts;
}
