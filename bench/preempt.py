"""`python -m bench.preempt`: the emergency switch time seen from outside, with no load.

Starts `loa serve` with one static RTP endpoint (stamp_frames on) listening on a local UDP
socket, plays a scheduled programme to it, then repeatedly POSTs an emergency and times
request start → first marked (switched) packet at the receiver, and request start → that
packet's frame-ready stamp. Prints one JSON line. Complements the load bench, whose
preemption figure includes its own lag in issuing the request."""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from loa.localservers import free_port

CONFIG = """admin_token = "bench"
data_dir = "{data}"
[web]
host = "127.0.0.1"
port = {port}
[relay]
udp_host = "127.0.0.1"
udp_port = {udp}
stamp_frames = true
[[zones]]
id = "p"
name = "P"
[[zones]]
id = "c0"
name = "C0"
parent = "p"
[[endpoints]]
id = "r"
name = "R"
zone = "c0"
kind = "rtp"
address = "127.0.0.1:{rtp}"
"""


def call(port: int, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}", data=data, method=method,
        headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("relay did not come up")


def first_marked(sock: socket.socket) -> tuple[float, float]:
    """(receive time, frame-ready stamp) of the next packet with the marker bit."""
    while True:
        data = sock.recv(2048)
        if data[1] & 0x80 and len(data) > 28:
            return time.time(), int.from_bytes(data[17:25], "big") / 1e6


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(2048)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def measure(port: int, sock: socket.socket, runs: int) -> tuple[list[float], list[float]]:
    call(port, "POST", "/broadcasts", {
        "source": {"type": "tone", "freq_hz": 500},
        "targets": {"zones": ["p"]}, "class": "scheduled",
    })  # fmt: skip
    time.sleep(0.5)
    received, stamped = [], []
    for _ in range(runs):
        drain(sock)
        t0 = time.time()
        em = call(port, "POST", "/broadcasts", {
            "source": {"type": "tone", "freq_hz": 900},
            "targets": {"zones": ["c0"]}, "class": "emergency", "chime": False,
        })  # fmt: skip
        recv, stamp = first_marked(sock)
        received.append((recv - t0) * 1000)
        stamped.append((stamp - t0) * 1000)
        time.sleep(0.2)
        call(port, "DELETE", f"/broadcasts/{em['id']}")
        time.sleep(0.2)
    return received, stamped


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max": round(ordered[-1], 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.preempt", description=__doc__)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    port, udp = free_port(), free_port()
    with (
        tempfile.TemporaryDirectory(prefix="loa-preempt-") as tmp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        config = Path(tmp) / "loa.toml"
        config.write_text(
            CONFIG.format(data=Path(tmp) / "data", port=port, udp=udp, rtp=sock.getsockname()[1])
        )
        relay = subprocess.Popen(
            [sys.executable, "-m", "loa", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_healthy(port)
            received, stamped = measure(port, sock, args.runs)
        finally:
            relay.terminate()
            relay.wait(timeout=15)
    print(json.dumps({
        "runs": args.runs,
        "request_to_first_packet_ms": summary(received),
        "request_to_first_frame_ready_ms": summary(stamped),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
