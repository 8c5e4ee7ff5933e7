// A pole's link counters (issue 15), from its status report: frames played as sent, frames
// recovered (resent after a NACK, from a redundant RED copy, rebuilt from in-band FEC),
// frames concealed, and times the UDP path failed. No DOM: node runs it in the tests.

/** The counters in words, or null before the pole reported any playout. */
export function linkText(status, t) {
  if (!status || typeof status.played !== "number") return null;
  const n = (key) => (typeof status[key] === "number" ? status[key] : 0);
  const resent = n("retransmitted");
  const red = n("redundant");
  return t("ep.link", {
    sent: Math.max(0, status.played - resent - red),
    resent,
    red,
    fec: n("recovered"),
    concealed: n("concealed"),
    failures: n("path_failures"),
  });
}
