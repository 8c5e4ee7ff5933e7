"""Simulated speakers: many per process on one asyncio loop, speaking the real protocol.

Each ``SimSpeaker`` opens the WebSocket control channel with its device token, reads the
``welcome``, proves its UDP path with signed hellos (``loa.relay.core.wire``) until acked,
then sends keepalives every ``keepalive_s`` and a status report every 5 s, like
``loa speaker``. It receives RTP on its own UDP socket (or as binary WebSocket messages with
``--transport ws``) and records, per packet and with no decoding: the latency from the frame's
stamp (``relay.stamp_frames``) to now, the sequence number for loss, the RFC 3550
interarrival jitter, and the arrival of marker packets (the first packet after a switch of
broadcast). About 1 % of speakers also decode with Opus and check the tone frequency.

A ``Worker`` owns a process's speakers and obeys its parent over a pipe: ``measure`` (start
recording), ``stop`` (stop, and summarise against the emergency's request time), ``storm``
(every speaker drops its WebSocket at once and reconnects with the client's backoff),
``finish`` (close everything and exit). Every phase is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import random
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import numpy as np

from loa.codecs import SAMPLE_RATE
from loa.codecs.opus import OpusDecoder
from loa.codecs.rtp import RtpPacket
from loa.relay.core.control import (
    PROTOCOL_VERSION,
    Hello,
    Redirect,
    Transport,
    Welcome,
    decode,
    encode,
)
from loa.relay.core.wire import ControlDatagram, DatagramType

log = logging.getLogger(__name__)

BUCKET_US = 100  # latency histogram resolution: 0.1 ms
BUCKETS = 20_000  # up to 2 s; one more bucket counts everything slower
HELLO_INTERVAL_S = 0.5
ACK_TIMEOUT_S = 5.0
WELCOME_TIMEOUT_S = 10.0
STATUS_EVERY_S = 5.0
BACKOFF_BASE_S = 1.0  # loa.speaker.client's defaults: full jitter, first retry within 1 s
BACKOFF_MAX_S = 60.0
INITIAL_CONNECTS = 100  # concurrent first connections per worker (a gentle ramp)
DECODE_WINDOW_FRAMES = 25  # 0.5 s of audio per frequency estimate: 2 Hz bins

_HEAD = struct.Struct("!BBHI").unpack_from  # V/P/X/CC, M/PT, sequence, timestamp
_STAMP = struct.Struct("!Q").unpack_from
_TIMESPEC = struct.Struct("@qq").unpack_from  # struct timespec of SCM_TIMESTAMPNS
# Linux's value (asm-generic/socket.h); Python's socket module does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class ProtocolError(Exception):
    """The relay answered something the protocol does not allow (refusal, bad welcome)."""


@dataclass(frozen=True)
class WorkerConfig:
    url: str
    transport: str  # "udp" or "ws"
    speakers: tuple[tuple[str, str, str], ...]  # (endpoint, zone, token)
    decode_every: int  # one speaker in this many decodes and checks the tone
    tone_hz: dict[str, float]  # broadcast class → tone frequency
    seed: int
    # Cluster (bench.cluster): the speakers' first servers, dealt round-robin (empty: ``url``
    # for all); latency is then also counted per server the packet came through.
    urls: tuple[str, ...] = ()


def backoff_delay(rng: random.Random, attempt: int) -> float:
    """Full jitter: uniform(0, min(max, base * 2**attempt)), as loa.speaker.client does."""
    return rng.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** min(attempt, 30)))


def peak_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(pcm))


class ToneCheck:
    """A sampled speaker's decoder: the dominant frequency of each 0.5 s of decoded audio and
    the stamp of its first frame; a marker (a switch of broadcast) starts a new window, so a
    window never mixes two broadcasts. Judged after the run, when the switch time is known."""

    def __init__(self) -> None:
        self.decoder = OpusDecoder()
        self.frames: list[np.ndarray] = []
        self.first_stamp = 0
        self.windows: list[tuple[int, float]] = []  # (first frame's stamp µs, peak Hz)

    def feed(self, data: bytes, marker: bool, stamp: int) -> None:
        if marker:
            self.frames.clear()
        if not self.frames:
            self.first_stamp = stamp
        self.frames.append(self.decoder.decode(RtpPacket.parse(data).payload))
        if len(self.frames) == DECODE_WINDOW_FRAMES:
            self.windows.append((self.first_stamp, peak_hz(np.concatenate(self.frames))))
            self.frames.clear()

    def judge(self, tone_hz: dict[str, float], switch_stamp: int | None) -> tuple[int, list[Any]]:
        """Windows whose peak is the tone of the broadcast that should be playing: the
        emergency's from ``switch_stamp`` on (for a targeted speaker), else the live one's."""
        ok, bad = 0, []
        for first, peak in self.windows:
            cls = "emergency" if switch_stamp is not None and first >= switch_stamp else "live"
            want = tone_hz[cls]
            if abs(peak - want) <= max(10.0, 0.01 * want):
                ok += 1
            else:
                bad.append([cls, round(peak, 1)])
        return ok, bad


class _Moved(Exception):
    """A cluster node sent us on to another (a ``redirect``)."""


class SimSpeaker:
    """One simulated speaker; driven by its ``run`` task (connect, read, reconnect) and by
    the loop calling ``on_readable`` when its UDP socket has a datagram.

    In a cluster it follows ``loa.speaker.client``: the welcome's server list, a redirect
    (before the welcome or while connected) to its first server after a short jittered
    wait, and on a lost connection the next server of the list, naming the lost one in
    its hello."""

    def __init__(
        self, worker: Worker, endpoint: str, zone: str, token: str, decode: bool, url: str = ""
    ) -> None:
        self.w = worker
        self.url = url or worker.cfg.url
        self.servers: tuple[str, ...] = ()
        self.lost = ""
        self.moved: tuple[str, ...] | None = None
        self.redirects = 0
        self.node_hist: list[int] | None = None  # the latency histogram of ``url`` (cluster)
        self.recovered_us: int | None = None  # failover: first packet off the watched server
        self.endpoint, self.zone, self.token = endpoint, zone, token
        self.rng = random.Random(f"{worker.cfg.seed}-{endpoint}")
        # A plain non-blocking socket rather than an asyncio transport: recvmsg() gives the
        # kernel's receive time (SO_TIMESTAMPNS), so a busy bench does not inflate latency.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.session = b""
        self.key = b""
        self.server: tuple[str, int] = ("127.0.0.1", 0)
        self.counter = 0
        self.acked = asyncio.Event()
        self.up = False  # welcome received and UDP acked
        self.back_at: float | None = None  # loop time this speaker was last up
        self.connects = 0
        self.unexpected_drops = 0
        self.next_keepalive = 0.0
        self.next_status = 0.0
        self.keepalive_s = 10.0
        self.playing: str | None = None
        self.tone = ToneCheck() if decode else None
        self.reset_stats()

    def reset_stats(self) -> None:
        self.received = 0
        self.first_ext = 0
        self.ext = 0
        self.last_seq = 0
        self.jitter = 0.0  # RFC 3550 J, in 48 kHz timestamp units
        self.last_arrival = 0.0
        self.last_ts = 0
        self.markers: list[tuple[int, int | None]] = []  # (receive µs, stamp µs)
        self.emergency_ctl_us: int | None = None  # `playing` with class emergency arrived
        if self.tone is not None:
            self.tone.windows.clear()

    # -- receiving ------------------------------------------------------------------------
    def on_readable(self, now_us: int) -> None:
        """One datagram (the worker's epoll says there is one); ``now_us``: this batch's time."""
        try:
            data, anc, _flags, addr = self.sock.recvmsg(2048, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.w.udp_errors += 1
            return
        if not data:
            return
        if data[0] == 0x4C:  # "L": a control datagram, never RTP (0x80..0xBF)
            self._on_control(data)
        elif self.w.recording and len(data) > 12 and not 192 <= data[1] <= 223:  # not RTCP
            if anc:
                sec, nsec = _TIMESPEC(anc[0][2])
                rx_us = sec * 1_000_000 + nsec // 1000
                self.w.note_lag(now_us - rx_us)
            else:
                rx_us = now_us
            if self.w.watch_url and addr != self.server:
                return  # failover: a packet the killed node sent, read only now
            self.on_rtp(data, rx_us)

    def _on_control(self, data: bytes) -> None:
        try:
            dgram = ControlDatagram.parse(data)
        except ValueError:
            return
        if (
            dgram.type is DatagramType.ACK
            and dgram.session == self.session
            and dgram.verify(self.key)
        ):
            self.acked.set()

    def on_rtp(self, data: bytes, rx_us: int) -> None:
        """The hot path: a few integer operations per packet, no decode (except sampled).
        ``rx_us`` is when the packet reached this speaker (the kernel's time for UDP)."""
        b0, b1, seq, ts = _HEAD(data)
        w = self.w
        stamp: int | None = None
        if b0 & 0x10 and data[12] == 0xBE and data[13] == 0xDE and data[16] == 0x17:
            stamp = _STAMP(data, 17)[0]
            lat = rx_us - stamp
            idx = lat // BUCKET_US if lat > 0 else 0
            w.hist[idx if idx < BUCKETS else BUCKETS] += 1
            if self.node_hist is not None:
                self.node_hist[idx if idx < BUCKETS else BUCKETS] += 1
            if lat > w.max_latency_us:
                w.max_latency_us = lat
        else:
            w.unstamped += 1
        arrival = rx_us * 0.048  # in timestamp units (48 kHz)
        if self.received:
            delta = (seq - self.last_seq) & 0xFFFF
            if delta < 0x8000:
                self.ext += delta
                self.last_seq = seq
            dts = (ts - self.last_ts) & 0xFFFFFFFF
            if dts >= 0x80000000:
                dts -= 0x100000000
            d = arrival - self.last_arrival - dts
            self.jitter += ((d if d > 0 else -d) - self.jitter) * 0.0625
        else:
            self.first_ext = self.ext = self.last_seq = seq
        self.received += 1
        if (
            self.recovered_us is None
            and w.watch_url
            and self.url != w.watch_url
            and rx_us > w.watch_us  # not one queued since before the kill
        ):
            self.recovered_us = rx_us
        self.last_arrival = arrival
        self.last_ts = ts
        if b1 & 0x80:
            self.markers.append((rx_us, stamp))
        if self.tone is not None:
            self.tone.feed(data, bool(b1 & 0x80), rx_us if stamp is None else stamp)

    def _on_json(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("type") == "redirect":  # the server closes next
            with contextlib.suppress(ValueError):
                self.moved = Redirect.parse(data).servers
        elif data.get("type") == "playing":
            self.playing = data.get("class")
            if self.playing == "emergency" and self.w.recording and self.emergency_ctl_us is None:
                self.emergency_ctl_us = time.time_ns() // 1000

    # -- connection -----------------------------------------------------------------------
    async def run(self, first: asyncio.Semaphore | None) -> None:
        """Connect, read until the socket closes, reconnect with backoff; until cancelled."""
        attempt = redirects_in_row = 0
        while True:
            self.moved = None
            try:
                if first is not None:
                    async with first:
                        await self._connect()
                    first = None
                else:
                    await self._connect()
                attempt = redirects_in_row = 0
                await self._read()
                if not self.w.storming and self.moved is None:
                    self.unexpected_drops += 1
                    attempt += 1
            except _Moved:
                pass  # redirected (self.moved is set): the code below connects to its server
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, ProtocolError) as exc:
                self.w.connect_errors[type(exc).__name__] += 1
                attempt += 1
            finally:
                self.up = False
                if self.ws is not None:
                    await self.ws.close()
                    self.ws = None
            if self.moved is not None:  # as loa.speaker.client._follow
                self.redirects += 1
                self.servers, self.url, self.lost = self.moved, self.moved[0], ""
                cap = min(2.0, 0.25 * 2.0 ** min(redirects_in_row, 10))
                redirects_in_row += 1
                await asyncio.sleep(self.rng.uniform(0.0, cap))
                continue
            if len(self.servers) > 1 and not self.w.storming:  # the next server of the list
                self.lost = self.url
                at = self.servers.index(self.url) if self.url in self.servers else -1
                self.url = self.servers[(at + 1) % len(self.servers)]
            await asyncio.sleep(backoff_delay(self.rng, attempt))

    async def _connect(self) -> None:
        self.ws = await self.w.http.ws_connect(f"{self.url}/api/v1/speaker", autoping=True)
        await self.ws.send_str(
            encode(Hello(self.token, PROTOCOL_VERSION, "loa-bench/0.1", self.lost))
        )
        msg = await self.ws.receive(timeout=WELCOME_TIMEOUT_S)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ProtocolError(f"expected a welcome, got {msg.type.name}")
        welcome = decode(msg.data)
        if isinstance(welcome, Redirect):
            self.moved = welcome.servers
            raise _Moved
        if not isinstance(welcome, Welcome):
            raise ProtocolError(f"refused: {welcome}")
        if welcome.servers:
            self.servers = welcome.servers
        self.lost = ""
        if self.w.cfg.urls:
            self.node_hist = self.w.node_hist(self.url)
        self.session, self.key = welcome.session, welcome.key
        self.server = (welcome.udp_host, welcome.udp_port)
        self.keepalive_s = welcome.keepalive_s
        if self.w.cfg.transport == "ws":
            await self.ws.send_str(encode(Transport("ws")))
        self.acked.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_TIMEOUT_S
        while not self.acked.is_set():
            if loop.time() > deadline:
                raise TimeoutError("no UDP ack")
            self.send_control(DatagramType.HELLO)
            with contextlib.suppress(TimeoutError):  # not wait_for: see loa.speaker.client
                async with asyncio.timeout(HELLO_INTERVAL_S):
                    await self.acked.wait()
        now = loop.time()
        self.next_keepalive = now + self.keepalive_s
        self.next_status = now + self.rng.uniform(0, STATUS_EVERY_S)
        self.connects += 1
        self.up = True
        self.back_at = now
        self.w.came_up()

    def send_control(self, kind: DatagramType) -> None:
        self.counter += 1
        dgram = ControlDatagram.signed(kind, self.session, self.counter, self.key)
        try:
            self.sock.sendto(bytes(dgram), self.server)
        except OSError:  # a full buffer or ICMP error: the next hello or keepalive retries
            self.w.udp_errors += 1

    async def _read(self) -> None:
        ws = self.ws
        assert ws is not None
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                if self.w.recording and len(msg.data) > 12:
                    self.on_rtp(msg.data, time.time_ns() // 1000)
            elif msg.type is aiohttp.WSMsgType.TEXT:
                with contextlib.suppress(ValueError):
                    self._on_json(json.loads(msg.data))

    def status(self) -> dict[str, Any]:
        lost = max(0, self.ext - self.first_ext + 1 - self.received) if self.received else 0
        return {
            "type": "status",
            "received": self.received,
            "lost": lost,
            "recovered": 0,
            "late": 0,
            "jitter_ms": round(self.jitter / 48, 3),
            "buffer_ms": 0,
            "volume": 80,
            "muted": False,
            "playing": self.playing,
        }


class Worker:
    """A process's speakers, one loop, one HTTP session; driven by its parent's commands."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.moved: list[SimSpeaker] = []
        self.http: aiohttp.ClientSession
        self.recording = False
        self.storming = False
        self.hist = [0] * (BUCKETS + 1)
        self.max_latency_us = 0
        self.unstamped = 0
        self.lag_hist = [0] * (BUCKETS + 1)  # bench's own delay: kernel receive → handler
        self.max_lag_us = 0
        self.udp_errors = 0
        self.connect_errors: Counter[str] = Counter()
        self.node_hists: dict[str, list[int]] = {}  # cluster: latency by server URL
        self.watch_url = ""  # failover: the killed node's URL
        self.watch_us = 0  # and when it was about to be killed (wall clock µs)
        urls = cfg.urls or (cfg.url,)
        self.speakers = [
            SimSpeaker(self, ep, zone, token, i % cfg.decode_every == 0, urls[i % len(urls)])
            for i, (ep, zone, token) in enumerate(cfg.speakers)
        ]
        self._up_changed = asyncio.Event()
        self.epoll = select.epoll()
        self.by_fd = {s.sock.fileno(): s for s in self.speakers}
        for fd in self.by_fd:
            self.epoll.register(fd, select.EPOLLIN)

    def on_epoll(self) -> None:
        """The loop watches one epoll set holding every speaker's socket, not 1,000 sockets:
        one callback per batch of ready sockets, one datagram read from each (level-triggered,
        so a socket with more comes back in the next batch)."""
        by_fd = self.by_fd
        now_us = time.time_ns() // 1000
        for fd, _events in self.epoll.poll(0):
            by_fd[fd].on_readable(now_us)

    def node_hist(self, url: str) -> list[int]:
        return self.node_hists.setdefault(url, [0] * (BUCKETS + 1))

    def note_lag(self, lag_us: int) -> None:
        idx = lag_us // BUCKET_US if lag_us > 0 else 0
        self.lag_hist[idx if idx < BUCKETS else BUCKETS] += 1
        if lag_us > self.max_lag_us:
            self.max_lag_us = lag_us

    def came_up(self) -> None:
        self._up_changed.set()

    async def wait_all_up(self, timeout_s: float) -> bool:
        """Until every speaker is up and has been since the last reset of ``back_at``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not all(s.up and s.back_at is not None for s in self.speakers):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._up_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._up_changed.wait()
        return True

    async def ticker(self) -> None:
        """Keepalives every keepalive_s and status every 5 s, for all speakers, from one task."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            now = loop.time()
            for s in self.speakers:
                if not s.up:
                    continue
                if now >= s.next_keepalive:
                    s.next_keepalive = now + s.keepalive_s
                    s.send_control(DatagramType.KEEPALIVE)
                if now >= s.next_status and s.ws is not None and not s.ws.closed:
                    s.next_status = now + STATUS_EVERY_S
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await s.ws.send_json(s.status())

    # -- phases -------------------------------------------------------------------------
    def measure(self) -> None:
        for s in self.speakers:
            s.reset_stats()
        self.hist = [0] * (BUCKETS + 1)
        self.max_latency_us = 0
        self.lag_hist = [0] * (BUCKETS + 1)
        self.max_lag_us = 0
        self.unstamped = 0
        for hist in self.node_hists.values():
            hist[:] = [0] * (BUCKETS + 1)
        self.recording = True

    def stop(self, request_us: int | None, targets: frozenset[str]) -> dict[str, Any]:
        """Stop recording and summarise; the emergency's per-speaker switch time is its first
        marked packet stamped at or after ``request_us`` (or received after it, unstamped)."""
        self.recording = False
        preempt, preempt_ctl, jitter = [], [], []
        missing, leaks, silent, received, lost = 0, 0, 0, 0, 0
        tone_windows, tone_ok, tone_bad = 0, 0, []
        for s in self.speakers:
            received += s.received
            if s.received:
                lost += max(0, s.ext - s.first_ext + 1 - s.received)
                jitter.append(s.jitter / 48)  # timestamp units → ms
            else:
                silent += 1
            switch = None
            if request_us is not None and s.zone in targets:
                switch = next(
                    (
                        (recv, stamp)
                        for recv, stamp in s.markers
                        if (stamp if stamp is not None else recv) >= request_us
                    ),
                    None,
                )
                if switch is None:
                    missing += 1
                else:
                    preempt.append((switch[0] - request_us) / 1000)
                if s.emergency_ctl_us is not None:
                    preempt_ctl.append((s.emergency_ctl_us - request_us) / 1000)
            elif request_us is not None:
                leaks += s.emergency_ctl_us is not None
            if s.tone is not None:
                switch_stamp = None if switch is None else (switch[1] or switch[0])
                ok, bad = s.tone.judge(self.cfg.tone_hz, switch_stamp)
                tone_windows += len(s.tone.windows)
                tone_ok += ok
                tone_bad += bad
        return {
            "speakers": len(self.speakers),
            "received": received,
            "lost": lost,
            "silent": silent,
            "unstamped": self.unstamped,
            "hist": {i: n for i, n in enumerate(self.hist) if n},
            "node_hist": {
                url: {i: n for i, n in enumerate(hist) if n}
                for url, hist in self.node_hists.items()
            },
            "on": dict(Counter(s.url for s in self.speakers if s.up)),
            "redirects": sum(s.redirects for s in self.speakers),
            "max_latency_us": self.max_latency_us,
            "lag_hist": {i: n for i, n in enumerate(self.lag_hist) if n},
            "max_lag_us": self.max_lag_us,
            "jitter_ms": jitter,
            "preempt_ms": preempt,
            "preempt_ctl_ms": preempt_ctl,
            "emergency_missing": missing,
            "emergency_leaks": leaks,
            "decode": {
                "speakers": sum(s.tone is not None for s in self.speakers),
                "windows": tone_windows,
                "ok": tone_ok,
                "bad_examples": tone_bad[:5],
            },
            "unexpected_drops": sum(s.unexpected_drops for s in self.speakers),
            "udp_errors": self.udp_errors,
        }

    def watch(self, url: str) -> int:
        """Failover: note the speakers now on ``url`` (about to be killed); each one's first
        packet through another server is recorded from now on. How many there are."""
        self.moved = [s for s in self.speakers if s.url == url]
        for s in self.speakers:
            s.recovered_us = None
        self.watch_url = url
        self.watch_us = time.time_ns() // 1000
        self.recording = True  # packets reach on_rtp again (stop() turned it off)
        return len(self.moved)

    async def recovered(self, timeout_s: float) -> dict[str, Any]:
        """Until every watched speaker has had a packet through another server: when each
        did (µs, wall clock) and how many did not within ``timeout_s``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(s.recovered_us is None for s in self.moved):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        self.watch_url = ""
        back = [s.recovered_us for s in self.moved if s.recovered_us is not None]
        return {
            "moved": len(self.moved),
            "back_us": back,
            "not_back": len(self.moved) - len(back),
            "on": dict(Counter(s.url for s in self.moved)),
        }

    async def storm(self, timeout_s: float) -> dict[str, Any]:
        """Every speaker drops its WebSocket at once; seconds until each is back up."""
        loop = asyncio.get_running_loop()
        self.storming = True
        t0 = loop.time()
        for s in self.speakers:
            s.back_at = None
        await asyncio.gather(*(s.ws.close() for s in self.speakers if s.ws is not None))
        await self.wait_all_up(timeout_s - (loop.time() - t0))
        self.storming = False
        back = sorted(s.back_at - t0 for s in self.speakers if s.back_at is not None)
        return {
            "speakers": len(self.speakers),
            "back": back,
            "not_back": len(self.speakers) - len(back),
            "errors": dict(self.connect_errors),
        }


async def _recv(conn: Connection) -> Any:
    """The parent's next command, without blocking the loop."""
    loop = asyncio.get_running_loop()
    while not await loop.run_in_executor(None, conn.poll, 0.5):
        pass
    return conn.recv()


async def _serve(cfg: WorkerConfig, conn: Connection, connect_timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)  # the default 100 would cap open websockets
    async with aiohttp.ClientSession(connector=connector) as http, asyncio.TaskGroup() as tg:
        worker = Worker(cfg)
        worker.http = http
        loop.add_reader(worker.epoll.fileno(), worker.on_epoll)
        first = asyncio.Semaphore(INITIAL_CONNECTS)
        t0 = loop.time()
        tasks = [tg.create_task(s.run(first)) for s in worker.speakers]
        tasks.append(tg.create_task(worker.ticker()))
        ok = await worker.wait_all_up(connect_timeout_s)
        conn.send(
            (
                "ready",
                {
                    "ok": ok,
                    "connect_s": loop.time() - t0,
                    "up": sum(s.up for s in worker.speakers),
                    "errors": dict(worker.connect_errors),
                },
            )
        )
        while True:
            match await _recv(conn):
                case ("measure",):
                    worker.measure()
                    conn.send(("measuring", None))
                case ("stop", request_us, targets):
                    conn.send(("stopped", worker.stop(request_us, frozenset(targets))))
                case ("watch", url):
                    conn.send(("watching", worker.watch(url)))
                case ("recovered", timeout_s):
                    conn.send(("recovered", await worker.recovered(timeout_s)))
                case ("storm", timeout_s):
                    conn.send(("stormed", await worker.storm(timeout_s)))
                case ("finish",):
                    break
                case other:
                    raise ValueError(f"unknown bench command {other!r}")
        for task in tasks:
            task.cancel()
        for s in worker.speakers:
            if s.ws is not None:
                await s.ws.close()
            s.sock.close()
        loop.remove_reader(worker.epoll.fileno())
        worker.epoll.close()
    conn.send(("finished", {"errors": dict(worker.connect_errors)}))


def worker_main(cfg: WorkerConfig, conn: Connection, connect_timeout_s: float) -> None:
    """Entry point of a worker process (multiprocessing, spawn)."""
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(_serve(cfg, conn, connect_timeout_s))
    finally:
        conn.close()


class SpeakerProcesses:
    """Speaker worker processes (``worker_main``, one per config), owned by a ``with`` block
    and asked in lockstep over pipes. Used by ``python -m bench`` and ``bench.cluster``."""

    def __init__(self, configs: list[WorkerConfig], connect_timeout: float) -> None:
        ctx = mp.get_context("spawn")  # a clean interpreter: no loop or sockets inherited
        self.connect_timeout = connect_timeout
        self.procs: list[Any] = []
        self.conns: list[Connection] = []
        for i, cfg in enumerate(configs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(cfg, child, connect_timeout),
                               name=f"loa-bench-{i}", daemon=True)  # fmt: skip
            self.procs.append(proc)
            self.conns.append(parent)

    def __enter__(self) -> SpeakerProcesses:
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("finish",))
        for proc in self.procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def ask(self, command: tuple[Any, ...] | None, timeout_s: float) -> list[Any]:
        """Send ``command`` to every worker (None: only wait) and gather their answers; a
        worker silent for ``timeout_s`` or dead is an error that says so."""
        loop = asyncio.get_running_loop()

        def recv(conn: Connection) -> Any:
            if not conn.poll(timeout_s):
                raise TimeoutError(f"a bench worker did not answer {command} in {timeout_s:g} s")
            try:
                return conn.recv()[1]
            except EOFError:
                raise RuntimeError("a bench worker died (its traceback is above)") from None

        for conn in self.conns:
            if command is not None:
                conn.send(command)
        return list(
            await asyncio.gather(*(loop.run_in_executor(None, recv, c) for c in self.conns))
        )
