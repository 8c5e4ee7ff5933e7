"""`python -m bench --against icecast`: the same Opus stream through Debian's icecast2.

Icecast 2 runs on a free loopback port with a generated config (no burst on connect, so a
listener hears live audio, not a backlog; enough client slots). A source process encodes a
1 kHz tone with loa's encoder (32 kbit/s, 20 ms packets) into Ogg pages of ``page_ms`` (20:
one packet a page, 40: two), paced by absolute deadlines, and PUTs them to /live.opus. A
listener process holds N HTTP listeners; each page's latency is the kernel's receive time
of the TCP segment that completed it (SO_TIMESTAMPNS) minus the time the source was due to
send it (its granule position over the shared start time). The bench installs nothing:
without ``/usr/bin/icecast2`` it reports that and measures nothing.

Run alone: ``python -m bench.icecast --listeners 1000 --duration 20 --page-ms 20``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from bench.relay import sample
from loa.codecs.ogg_opus import OggOpusWriter
from loa.codecs.opus import OpusEncoder
from loa.localservers import free_port

ICECAST = "/usr/bin/icecast2"
MOUNT = "/live.opus"
PRE_SKIP = 312
_TIMESPEC = struct.Struct("@ll")
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CONFIG = """<icecast>
  <location>loopback</location><admin>bench@localhost</admin>
  <limits><clients>{clients}</clients><sources>2</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>0</burst-on-connect>
    <burst-size>0</burst-size></limits>
  <authentication><source-password>{password}</source-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths><basedir>{dir}</basedir><logdir>{dir}</logdir><webroot>{dir}</webroot>
    <adminroot>{dir}</adminroot><pidfile>{dir}/icecast.pid</pidfile></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
    <loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>{changeowner}</security>
</icecast>
"""


def available() -> bool:
    return Path(ICECAST).exists() or shutil.which("icecast2") is not None


# -- the source -------------------------------------------------------------------------------
def _pages(page_ms: int, seconds: float) -> list[bytes]:
    """The whole stream's audio pages (encoded before pacing starts: only sending is paced)."""
    encoder = OpusEncoder()  # the defaults are [opus]'s defaults
    writer = OggOpusWriter(secrets.randbits(32), PRE_SKIP, packets_per_page=page_ms // 20)
    t = np.arange(960) / 48000
    pages: list[bytes] = []
    for i in range(int(seconds * 50)):
        pcm = (8000 * np.sin(2 * np.pi * 1000 * (t + i * 0.02))).astype(np.int16)
        out = writer.write_packet(encoder.encode(pcm))
        if out:
            pages.append(out)
    return [writer.header_pages(), *pages]


def source_main(port: int, password: str, page_ms: int, seconds: float, t0: float) -> None:
    """PUT the stream to icecast, page k due at ``t0 + k × page_ms`` (wall clock)."""
    header, *pages = _pages(page_ms, seconds)
    auth = base64.b64encode(f"source:{password}".encode()).decode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        (
            f"PUT {MOUNT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {auth}\r\n"
            "Content-Type: audio/ogg\r\nIce-Public: 0\r\nIce-Name: loa bench\r\n\r\n"
        ).encode()
    )
    sock.settimeout(5)
    answer = sock.recv(4096)
    if b" 200" not in answer.split(b"\r\n", 1)[0]:
        raise SystemExit(f"icecast refused the source: {answer[:200]!r}")
    sock.sendall(header)
    page_s = page_ms / 1000
    for k, page in enumerate(pages, start=1):
        pause = t0 + k * page_s - time.time()
        if pause > 0:
            time.sleep(pause)
        sock.sendall(page)
    sock.close()


# -- the listeners ------------------------------------------------------------------------------
class _Listener:
    __slots__ = ("buf", "header_done", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.header_done = False


def listeners_main(
    port: int, n: int, t0: float, start_s: float, stop_s: float, page_ms: int
) -> dict[str, Any]:
    """N listeners; latency of every page sent in [t0 + start_s, t0 + stop_s)."""
    return asyncio.run(_listen(port, n, t0, start_s, stop_s, page_ms))


async def _listen(
    port: int, n: int, t0: float, start_s: float, stop_s: float, page_ms: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    hist: dict[int, int] = {}
    state = {"pages": 0, "max_us": 0, "bytes": 0, "errors": 0}
    listeners: list[_Listener] = []
    request = f"GET {MOUNT} HTTP/1.0\r\nHost: 127.0.0.1\r\nIcy-MetaData: 0\r\n\r\n".encode()
    for _ in range(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, request)
        except OSError:
            state["errors"] += 1
            sock.close()
            continue
        listener = _Listener(sock)
        listeners.append(listener)
        loop.add_reader(sock.fileno(), _on_readable, listener, t0, start_s, stop_s, hist, state)
    await asyncio.sleep(max(0.0, t0 + stop_s + 1.0 - time.time()))
    for listener in listeners:
        loop.remove_reader(listener.sock.fileno())
        listener.sock.close()
    max_ms = state["max_us"] / 1000
    return {
        "listeners": len(listeners),
        "connect_errors": state["errors"],
        "pages": state["pages"],
        "latency_ms": {
            "p50": report.hist_percentile(hist, 50, max_ms) if hist else None,
            "p95": report.hist_percentile(hist, 95, max_ms) if hist else None,
            "p99": report.hist_percentile(hist, 99, max_ms) if hist else None,
            "max": round(max_ms, 3) if hist else None,
        },
    }


def _on_readable(
    lst: _Listener,
    t0: float,
    start_s: float,
    stop_s: float,
    hist: dict[int, int],
    state: dict[str, int],
) -> None:
    try:
        data, anc, _, _ = lst.sock.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        state["errors"] += 1
        return
    if not data:
        return
    if anc:
        sec, nsec = _TIMESPEC.unpack(anc[0][2][: _TIMESPEC.size])
        rx = sec + nsec / 1e9
    else:
        rx = time.time()
    buf = lst.buf
    buf += data
    if not lst.header_done:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        del buf[: end + 4]
        lst.header_done = True
    while len(buf) >= 27:  # whole Ogg pages: header, segment table, body
        if buf[:4] != b"OggS":
            at = buf.find(b"OggS", 1)
            del buf[: at if at > 0 else len(buf)]
            continue
        segments = buf[26]
        if len(buf) < 27 + segments:
            return
        size = 27 + segments + sum(buf[27 : 27 + segments])
        if len(buf) < size:
            return
        granule = int.from_bytes(buf[6:14], "little")
        del buf[:size]
        if granule == 0 or granule == 0xFFFF_FFFF_FFFF_FFFF:  # header pages
            continue
        due = granule / 48000  # the writer counts from 0, pre-skip among the samples
        if not start_s <= due < stop_s:
            continue
        lat_us = max(0, int((rx - t0 - due) * 1e6))
        bucket = lat_us // 100
        hist[bucket] = hist.get(bucket, 0) + 1
        state["pages"] += 1
        state["max_us"] = max(state["max_us"], lat_us)


# -- one run --------------------------------------------------------------------------------------
def run(listeners: int, duration_s: float, page_ms: int, warmup_s: float = 3.0) -> dict[str, Any]:
    """icecast2 with ``listeners`` for ``duration_s`` measured seconds; its CPU and RSS."""
    if not available():
        return {"error": f"{ICECAST} is not installed (apt-get install icecast2)"}
    with tempfile.TemporaryDirectory(prefix="loa-icecast-") as tmp:
        port, password = free_port(), secrets.token_hex(8)
        config = Path(tmp) / "icecast.xml"
        # icecast2 will not run as root: it drops to nobody, who must write its logs here
        changeowner = ""
        if os.geteuid() == 0:
            changeowner = "<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
            os.chmod(tmp, 0o777)
        config.write_text(
            _CONFIG.format(
                clients=listeners + 10,
                password=password,
                port=port,
                dir=tmp,
                changeowner=changeowner,
            )
        )
        with (Path(tmp) / "stderr.log").open("wb") as errors:
            proc = subprocess.Popen(
                [ICECAST, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=errors
            )
        try:
            _wait_port(port, proc)
            return _measure(proc, port, password, listeners, duration_s, page_ms, warmup_s)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"icecast2 exited at start with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError("icecast2 did not listen within 10 s")


def _wait_mount(port: int, source: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and source.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(f"GET {MOUNT} HTTP/1.0\r\n\r\n".encode())
            s.settimeout(1)
            if s.recv(64).startswith(b"HTTP/1.0 200"):
                return
        time.sleep(0.1)
    raise RuntimeError("icecast2 did not mount the source within 10 s")


def _measure(
    proc: subprocess.Popen[bytes],
    port: int,
    password: str,
    n: int,
    duration_s: float,
    page_ms: int,
    warmup_s: float,
) -> dict[str, Any]:
    lead_s = 3.0 + n / 300  # time for the listeners to connect before the audio is due
    t0 = time.time() + lead_s
    total = warmup_s + duration_s
    source = subprocess.Popen(
        [sys.executable, "-m", "bench.icecast", "--role", "source", "--port", str(port),
         "--password", password, "--page-ms", str(page_ms), "--duration", str(total + 1),
         "--t0", repr(t0)],
    )  # fmt: skip
    _wait_mount(port, source)  # a listener that comes before the source gets a 404
    listen = subprocess.Popen(
        [sys.executable, "-m", "bench.icecast", "--role", "listeners", "--port", str(port),
         "--listeners", str(n), "--page-ms", str(page_ms), "--t0", repr(t0),
         "--start", str(warmup_s), "--stop", str(total)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(max(0.0, t0 + warmup_s - time.time()))
        s0 = sample(proc.pid)
        time.sleep(duration_s)
        s1 = sample(proc.pid)
        out, _ = listen.communicate(timeout=lead_s + total + 30)
        source.wait(timeout=30)
    finally:
        for p in (source, listen):
            if p.poll() is None:
                p.kill()
                p.wait()
    heard = json.loads(out.decode().strip().splitlines()[-1])
    if s0 is None or s1 is None:
        raise RuntimeError("icecast2 went away during the measurement")
    cpu_s = s1.cpu_s - s0.cpu_s
    wall = s1.at - s0.at
    return {
        "server": "icecast2",
        "page_ms": page_ms,
        "listeners": heard["listeners"],
        "duration_s": round(wall, 3),
        "cpu_pct": round(100 * cpu_s / wall, 1),
        "cpu_us_per_listener_s": round(cpu_s * 1e6 / (n * wall), 1),
        "rss_mb": round(s1.rss_mb, 1),
        **{k: heard[k] for k in ("pages", "latency_ms", "connect_errors")},
    }


def compare(loa_run: dict[str, Any], icecast_runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The side-by-side table: loa's UDP speakers against icecast's HTTP listeners."""
    n, duration = loa_run["speakers"], loa_run["duration_s"]
    frame_ms = loa_run.get("frame_ms", 20)
    cpu_pct = loa_run["relay_cpu_pct"]
    # Per packet × the packets a listener-second (1000 / frame_ms): a relay short of CPU
    # (below real time) sends fewer packets, and its CPU over listener-seconds would flatter
    # it.
    per_packet = loa_run.get("cpu_us_per_packet")
    if per_packet is not None:
        loa_us: float | None = round(per_packet * 1000 / frame_ms, 1)
    else:
        loa_us = round(cpu_pct / 100 * 1e6 / n, 1) if cpu_pct is not None else None
    rows: list[dict[str, Any]] = [
        {
            "server": "loa",
            "page_ms": frame_ms,
            "listeners": n,
            "duration_s": duration,
            "cpu_pct": cpu_pct,
            "cpu_us_per_listener_s": loa_us,
            "rss_mb": loa_run["relay_rss_mb"],
            "latency_ms": loa_run["latency_ms"],
        },
        *icecast_runs,
    ]
    for row in rows[1:]:
        theirs = row.get("cpu_us_per_listener_s")
        if theirs and loa_us is not None and row.get("page_ms") == frame_ms:
            rows[0][f"ratio_to_icecast_{frame_ms}ms"] = round(loa_us / theirs, 2)
    return {"rows": rows}


def table(comparison: dict[str, Any]) -> str:
    """The comparison as text lines."""
    lines = ["server    page ms  listeners  CPU %  µs CPU/listener-s  RSS MB  latency p50/p99 ms"]
    for row in comparison["rows"]:
        if "error" in row:
            lines.append(f"icecast2: {row['error']}")
            continue
        lat = row["latency_ms"]
        lines.append(
            f"{row['server']:<9} {row['page_ms']:>7} {row['listeners']:>10} {row['cpu_pct']!s:>6} "
            f"{row['cpu_us_per_listener_s']!s:>18} {row['rss_mb']!s:>7}  {lat['p50']}/{lat['p99']}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.icecast", description=__doc__.split("\n")[0])
    p.add_argument("--role", choices=("run", "source", "listeners"), default="run")
    p.add_argument("--listeners", type=int, default=1000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--page-ms", type=int, choices=(20, 40), default=20)
    p.add_argument("--port", type=int)
    p.add_argument("--password")
    p.add_argument("--t0", type=float)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--stop", type=float, default=0.0)
    args = p.parse_args(argv)
    if args.role == "source":
        source_main(args.port, args.password, args.page_ms, args.duration, args.t0)
    elif args.role == "listeners":
        result = listeners_main(
            args.port, args.listeners, args.t0, args.start, args.stop, args.page_ms
        )
        print(json.dumps(result), flush=True)
    else:
        if args.listeners < 1 or args.duration <= 0:
            p.error("--listeners ≥ 1 and --duration > 0")
        print(json.dumps(run(args.listeners, args.duration, args.page_ms)), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
