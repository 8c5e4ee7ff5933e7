"""Counters the relay keeps for /metrics, rendered in Prometheus text format."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from loa.relay.core.reception import Reception

# Fan-out time of one frame to all its listeners, in seconds (Prometheus histogram buckets).
FANOUT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)


def family(name: str, kind: str, help_: str, samples: Sequence[tuple[str, float]]) -> list[str]:
    """One metric family in Prometheus text: HELP, TYPE, then ``loa_<name><labels> value``."""
    return [
        f"# HELP loa_{name} {help_}",
        f"# TYPE loa_{name} {kind}",
        *(f"loa_{name}{labels} {value:g}" for labels, value in samples),
    ]


@dataclass
class Metrics:
    packets_sent: int = 0
    frames_encoded: int = 0
    datagrams_dropped: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0  # sender reports
    rtcp_malformed: int = 0  # RTCP from a known receiver that did not parse
    preemptions: int = 0
    broadcasts_expired: int = 0
    speaker_connects: int = 0
    speaker_refused: int = 0
    speaker_redirected: int = 0  # cluster: sent to the node serving their commune
    ws_audio_dropped: int = 0
    udp_send_dropped: int = 0
    nacks_received: int = 0  # generic NACKs (RFC 4585) about a speaker's stream
    retransmitted: int = 0  # packets sent again because a NACK asked
    # NACKed packets not sent again: unknown (never sent, too old to trace), expired (out of
    # the broadcast's history), limited (over the pole's rate), malformed (the NACK itself)
    nack_unserved: Counter[str] = field(default_factory=Counter)
    broadcasts_started: Counter[str] = field(default_factory=Counter)
    fanout_counts: list[int] = field(default_factory=lambda: [0] * (len(FANOUT_BUCKETS_S) + 1))
    fanout_sum_s: float = 0.0

    def observe_fanout(self, seconds: float) -> None:
        self.fanout_counts[bisect.bisect_left(FANOUT_BUCKETS_S, seconds)] += 1
        self.fanout_sum_s += seconds

    def _fanout_lines(self) -> list[str]:
        lines = [
            "# HELP loa_fanout_seconds Time to hand one encoded frame to all its listeners.",
            "# TYPE loa_fanout_seconds histogram",
        ]
        total = 0
        for le, n in zip(FANOUT_BUCKETS_S, self.fanout_counts, strict=False):
            total += n
            lines.append(f'loa_fanout_seconds_bucket{{le="{le:g}"}} {total}')
        total += self.fanout_counts[-1]
        lines.append(f'loa_fanout_seconds_bucket{{le="+Inf"}} {total}')
        lines.append(f"loa_fanout_seconds_sum {self.fanout_sum_s:.6f}")
        lines.append(f"loa_fanout_seconds_count {total}")
        return lines

    def render(
        self,
        *,
        endpoints_online: int,
        endpoints_total: int,
        active: Counter[str],
        drops: dict[str, int],
        receptions: Sequence[tuple[str, Reception]] = (),
        playout_errors: Sequence[tuple[str, float]] = (),
    ) -> str:
        """The Prometheus text. ``playout_errors``: (pole, seconds) of the speakers playing in
        step, from their last status (> 0: late against capture time + D)."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.extend(family(name, kind, help_, samples))

        metric(
            "endpoints_online",
            "gauge",
            "Endpoints with a live session or a static address.",
            [("", endpoints_online)],
        )
        metric("endpoints", "gauge", "Endpoints known to this node.", [("", endpoints_total)])
        metric(
            "packets_sent_total",
            "counter",
            "RTP packets sent to endpoints.",
            [("", self.packets_sent)],
        )
        metric(
            "frames_encoded_total",
            "counter",
            "Opus frames encoded (once per broadcast).",
            [("", self.frames_encoded)],
        )
        metric(
            "datagrams_dropped_total",
            "counter",
            "Inbound datagrams dropped, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(drops.items())] or [("", 0)],
        )
        metric(
            "rtcp_received_total",
            "counter",
            "RTCP packets received from speakers.",
            [("", self.rtcp_received)],
        )
        metric(
            "preemptions_total",
            "counter",
            "Endpoints taken from one broadcast by another.",
            [("", self.preemptions)],
        )
        metric(
            "broadcasts_started_total",
            "counter",
            "Broadcasts started, by class.",
            [(f'{{class="{c}"}}', n) for c, n in sorted(self.broadcasts_started.items())]
            or [("", 0)],
        )
        metric(
            "broadcasts_active",
            "gauge",
            "Broadcasts now active, by class.",
            [(f'{{class="{c}"}}', n) for c, n in sorted(active.items())] or [("", 0)],
        )
        metric(
            "broadcasts_expired_total",
            "counter",
            "Broadcasts dropped unplayed at expiry.",
            [("", self.broadcasts_expired)],
        )
        metric(
            "speaker_connects_total",
            "counter",
            "Speaker control connections accepted.",
            [("", self.speaker_connects)],
        )
        metric(
            "speaker_refused_total",
            "counter",
            "Speaker connections refused (bad token).",
            [("", self.speaker_refused)],
        )
        metric(
            "speaker_redirected_total",
            "counter",
            "Speakers redirected to the node serving their commune (cluster).",
            [("", self.speaker_redirected)],
        )
        metric(
            "ws_audio_dropped_total",
            "counter",
            "Stale audio dropped from full WS queues.",
            [("", self.ws_audio_dropped)],
        )
        metric(
            "udp_send_dropped_total",
            "counter",
            "RTP packets dropped because the socket buffer was full.",
            [("", self.udp_send_dropped)],
        )
        metric(
            "rtcp_sent_total",
            "counter",
            "RTCP sender reports sent to endpoints.",
            [("", self.rtcp_sent)],
        )
        metric(
            "rtcp_malformed_total",
            "counter",
            "RTCP packets from receivers that did not parse.",
            [("", self.rtcp_malformed)],
        )
        metric(
            "nacks_received_total",
            "counter",
            "Generic NACKs (RFC 4585) received from speakers.",
            [("", self.nacks_received)],
        )
        metric(
            "retransmitted_total",
            "counter",
            "RTP packets sent again because a speaker's NACK asked for them.",
            [("", self.retransmitted)],
        )
        metric(
            "nack_unserved_total",
            "counter",
            "NACKed packets not sent again, by reason.",
            [(f'{{reason="{r}"}}', n) for r, n in sorted(self.nack_unserved.items())] or [("", 0)],
        )
        for name, help_, value in _RECEPTION:
            samples = [(_pole(ep_id), value(r)) for ep_id, r in receptions]
            samples = [(labels, v) for labels, v in samples if v is not None]
            if samples:
                metric(name, "gauge", help_, samples)  # type: ignore[arg-type]
        if playout_errors:
            metric(
                "pole_playout_error_seconds",
                "gauge",
                "When the pole plays against capture time + D, by its own clock estimate.",
                [(_pole(ep_id), error) for ep_id, error in playout_errors],
            )
        lines.extend(self._fanout_lines())
        return "\n".join(lines) + "\n"


def _pole(endpoint_id: str) -> str:
    escaped = endpoint_id.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{{endpoint="{escaped}"}}'


# Per pole, from its last RTCP receiver report (loa.relay.core.reception).
_RECEPTION: tuple[tuple[str, str, Callable[[Reception], float | None]], ...] = (
    (
        "pole_fraction_lost",
        "Share of packets lost since the pole's previous report.",
        lambda r: r.fraction_lost,
    ),
    (
        "pole_packets_lost",
        "Packets the pole has lost in all (RTCP cumulative).",
        lambda r: r.cumulative_lost,
    ),
    ("pole_jitter_seconds", "Interarrival jitter the pole reports.", lambda r: r.jitter_s),
    ("pole_rtt_seconds", "Round trip to the pole (RTCP LSR/DLSR).", lambda r: r.rtt_s),
)
