"""The bench's report: percentiles from latency histograms, the JSON of a run, a readable
summary, machine information and the pictures (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.speakers import BUCKET_US, BUCKETS

REQUIRED_KEYS = (
    "speakers",
    "duration_s",
    "latency_ms",
    "loss_pct",
    "jitter_ms",
    "preempt_ms",
    "relay_cpu_pct",
    "cpu_us_per_packet",
    "relay_user_cpu_pct",
    "relay_sys_cpu_pct",
    "floor_us_per_packet",
    "ratio_to_floor",
    "floor_read_us_per_packet",
    "ratio_to_floor_read",
    "relay_rss_mb",
    "reconnect_s",
    "sync_skew_ms",
)


def merge_hists(hists: Iterable[Mapping[Any, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for hist in hists:
        for idx, n in hist.items():
            total[int(idx)] = total.get(int(idx), 0) + n
    return total


def hist_percentile(hist: Mapping[int, int], q: float, max_ms: float) -> float | None:
    """The q-th percentile (0..100) in ms: the upper edge of the bucket holding it, capped by
    the exact maximum (the last bucket also holds everything beyond the histogram)."""
    count = sum(hist.values())
    if not count:
        return None
    rank = max(1, math.ceil(q / 100 * count))
    seen = 0
    for idx in sorted(hist):
        seen += hist[idx]
        if seen >= rank:
            if idx >= BUCKETS:  # the overflow bucket: all we know is the maximum
                return round(max_ms, 3)
            return round(min((idx + 1) * BUCKET_US / 1000, max_ms), 3)
    return round(max_ms, 3)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of a list; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 3)


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": round(max(values), 3) if values else None,
        "n": len(values),
    }


def cdf(hist: Mapping[int, int]) -> tuple[list[float], list[float]]:
    """(latency ms, cumulative fraction) points of a latency histogram."""
    count = sum(hist.values())
    xs, ys, seen = [], [], 0
    for idx in sorted(hist):
        seen += hist[idx]
        xs.append((idx + 1) * BUCKET_US / 1000)
        ys.append(seen / count)
    return xs, ys


def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write_json(data: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def summary(r: Mapping[str, Any]) -> str:
    """Human-readable lines for one run."""
    lat, pre = r["latency_ms"], r["preempt_ms"]
    skew = r.get("sync_skew_ms")
    sync = (
        [f"  synchronised playout (bench.sync): skew ms p50 {skew['p50']} p95 {skew['p95']} "
         f"max {skew['max']} between poles of one village"]
        if skew
        else []
    )  # fmt: skip
    return "\n".join(
        [
            f"bench: {r['speakers']} speakers ({r['transport']}), {r['duration_s']} s, "
            f"{r['packets']['received']} packets received",
            f"  latency ms p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} max {lat['max']}"
            f"   loss {r['loss_pct']} %   jitter {r['jitter_ms']} ms",
            f"  real time: relay sent {r['realtime_pct']['relay_sent']} %, speakers received "
            f"{r['realtime_pct']['received']} % of 50 frames/s",
            f"  preemption ms p50 {pre['p50']} p99 {pre['p99']} max {pre['max']} "
            f"({pre['n']} of {r['emergency']['targeted']} targeted speakers)",
            f"  relay CPU {r['relay_cpu_pct']} % (user {r['relay_user_cpu_pct']} %, system "
            f"{r['relay_sys_cpu_pct']} %), {r['cpu_us_per_packet']} µs/packet, floor "
            f"{r['floor_us_per_packet']} µs/packet, ratio to floor {r['ratio_to_floor']} "
            f"(to sockets that are read: {r['floor_read_us_per_packet']} µs/packet, ratio "
            f"{r['ratio_to_floor_read']}), RSS {r['relay_rss_mb']} MB   "
            f"bench CPU {r['bench_cpu_pct']} %   "
            f"relay waited for CPU {r['relay_wait_pct']} %, load {r['loadavg_1m']}",
            f"  reconnect storm: all back in {r['reconnect_s']} s   "
            f"tone check {r['decode_check']['ok']}/{r['decode_check']['windows']} windows",
            *sync,
        ]
    )


def sweep_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = [
        {
            k: run[k]
            for k in (
                "speakers",
                "transport",
                "latency_ms",
                "loss_pct",
                "realtime_pct",
                "jitter_ms",
                "preempt_ms",
                "relay_cpu_pct",
                "cpu_us_per_packet",
                "floor_us_per_packet",
                "ratio_to_floor",
                "floor_read_us_per_packet",
                "ratio_to_floor_read",
                "relay_rss_mb",
                "bench_cpu_pct",
                "bench_lag_ms",
                "relay_wait_pct",
                "loadavg_1m",
                "reconnect_s",
            )
        }
        for run in runs
    ]
    return {"sweep": [r["speakers"] for r in runs], "runs": rows, "machine": machine_info()}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_runs(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Latency percentiles and relay CPU against N (when there are several runs), and the
    latency CDF of each run."""
    plt = _plt()
    several = len(runs) > 1
    fig, axes = plt.subplots(1, 3 if several else 1, figsize=(16 if several else 6, 4.5))
    axes = list(axes) if several else [axes]
    if several:
        ns = [r["speakers"] for r in runs]
        ax = axes[0]
        for key in ("p50", "p95", "p99"):
            ax.plot(ns, [r["latency_ms"][key] for r in runs], marker="o", label=f"latency {key}")
        ax.plot(
            ns, [r["preempt_ms"]["p99"] for r in runs], marker="s", ls="--", label="preemption p99"
        )
        ax.set(xlabel="speakers", ylabel="ms", title="delivery latency and preemption")
        ax.grid(alpha=0.3)
        ax.legend()
        ax = axes[1]
        ax.plot(ns, [r["relay_cpu_pct"] for r in runs], marker="o", label="relay CPU %")
        ax.plot(ns, [r["bench_cpu_pct"] for r in runs], marker="^", label="bench workers CPU %")
        ax.set(xlabel="speakers", ylabel="% of one core", title="CPU")
        ax.grid(alpha=0.3)
        ax2 = ax.twinx()
        ax2.plot(
            ns,
            [r["cpu_us_per_packet"] for r in runs],
            marker="s",
            color="tab:red",
            label="relay µs / packet",
        )
        ax2.set_ylabel("relay µs per delivered packet")
        ax.legend(loc="upper left")
        ax2.legend(loc="lower right")
    ax = axes[-1]
    for r in runs:
        hist = {int(k): v for k, v in r["latency_histogram"]["counts"].items()}
        if hist:
            xs, ys = cdf(hist)
            ax.step(xs, ys, where="post", label=f"N = {r['speakers']}")
    ax.set(
        xscale="log",
        xlabel="delivery latency, ms (log)",
        ylabel="fraction of packets",
        title="latency CDF",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.suptitle(f"loa bench ({runs[0]['transport']}), {machine_info()['nproc']} cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
