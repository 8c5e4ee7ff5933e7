"""The speaker's protocol client: WebSocket control, UDP hello/keepalive, audio, playout, status.

The control channel's protocol is the core's (``loa.relay.core.control.ClientChannel``: the
hello, the welcome, the commands and the levels they set); this module moves its texts and
acts on its events. Driven by ``Speaker.run()``. One TaskGroup owns the playout clock and
the connection loop; each connection owns a second TaskGroup with the UDP prober and the
status reporter, while the connection loop itself reads the WebSocket. Protocol:
docs/DESIGN.md, "Speaker protocol, on the wire (version 1)".

Decisions:

- A refused hello (``bad_token``, ``bad_hello``, ``unsupported_version``) is logged once at
  ERROR and retried every ``backoff_max_s`` (times a random 0.5–1): a pole far away recovers
  on its own once the operator fixes its token, without hammering the server meanwhile.
  ``fatal_auth=True`` makes ``run()`` raise ``SpeakerRefused`` instead (for a person at a
  terminal).
- Every other disconnect retries quickly first: for ``quick_window_s`` (120 s) after the
  connection was lost, each retry waits ``uniform(0, min(quick_retry_s, backoff_max_s))``
  (2 s, full jitter), so a speaker is back within ~2 s of a restarted server listening and a
  thousand of them still arrive spread over 2 s, not at once. A longer outage falls back to
  ``uniform(0, min(backoff_max_s, backoff_min_s * 2**n))`` (full jitter, ``n`` counting the
  retries); ``n`` returns to 0 after a connection that stayed up ``stable_after_s``.
- Cluster: the welcome names the servers to try in order (this one first). A lost
  connection, or one that cannot be made, moves on to the next server, whose hello names
  the one lost (``lost``) so a node that does not serve our commune still lets us in while
  the lost one is down. A ``redirect`` (another node serves our commune) connects to its
  first server after ``uniform(0, min(quick_retry_s, 0.25 * 2**n))``, ``n`` counting
  redirects in a row, so a redirect loop backs off instead of spinning.
- The UDP counter is one per process, so it keeps increasing across reconnects.
- Audio is taken from UDP and from binary WebSocket messages alike; the server decides
  which it sends. UDP datagrams from any address but the server's are counted and ignored;
  RTP with the wrong payload type or SSRC is counted as bad. The hello says we take RFC 2198
  RED; RED packets (the welcome's ``red_payload_type``) are unwrapped before the jitter
  buffer (``loa.speaker.redundancy``), a malformed one dropped and counted (``red_malformed``).
- With UDP acked, keepalives go every ``keepalive_s``. One unanswered keepalive, or no
  audio for ``AUDIO_GAP_S`` while a broadcast is on air, and the path is re-punched at once
  with fresh hellos (a new NAT mapping rebinds the session); if none is acked within
  ``REPUNCH_WITHIN_S``, audio moves to the WebSocket and UDP is probed again soon
  — unless the WebSocket does not answer a ping within ``PING_WITHIN_S`` either: then the
  server is unreachable (dead without a reset, or cut off by a partition) and the speaker
  drops the connection and tries the next server at once, instead of waiting for the
  WebSocket's 30 s heartbeat.
- The ``playing`` message's volume applies while that broadcast plays, the speaker's own
  volume (``volume`` command) otherwise; ``mute`` silences both. Status reports the volume
  being applied. The new volume applies at once, not at the first packet of the broadcast.
- Synchronised playout (docs/DESIGN.md, "Synchronised playout"), with a server whose welcome
  says ``clock_probes``: once UDP works, clock probes go out in a burst of ``PROBE_BURST``
  20 ms apart, then every ``PROBE_FAST_S`` for ``PROBE_FAST_FOR_S``, then every
  ``PROBE_INTERVAL_S`` (each is also a keepalive). The playout task keeps the output's
  timeline (when the next sample written is heard, on the speaker's clock) and hands each
  frame, with its error against capture time + D, to ``loa.speaker.playout.Playout``.
  Without a clock estimate or a sender report for the frame's segment it plays as it comes.
- Everything the speaker times (jitter buffer, probes, playout) is on ``clock``, injectable:
  a ``SkewedClock`` makes a pole whose crystal is wrong, for the bench and the tests. The
  path watch and the reconnect backoff keep the event loop's clock (durations only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
from yarl import URL

from loa import __version__
from loa.codecs import FRAME_S, SAMPLE_RATE
from loa.codecs.opus import OpusDecoder
from loa.codecs.pcm import Int16Array
from loa.codecs.rtcp import GenericNack, is_rtcp
from loa.codecs.rtp import RtpPacket
from loa.errors import LoaError
from loa.relay.core.channel import (
    ClientChannel,
    DropAudio,
    Ignored,
    LevelsChanged,
    Redirected,
    Refused,
    ServerError,
    TransportLost,
    Welcomed,
)
from loa.relay.core.control import CLOSE_REPLACED, NOT_JSON, Welcome
from loa.relay.core.reception import unix_time
from loa.relay.core.wire import ControlDatagram, DatagramType, looks_like_control
from loa.speaker.clock import Clock, ClockEstimator, HostClock, Method, Probe
from loa.speaker.jitter import Conceal, JitterBuffer, Play, Recover, Stretch, Wait
from loa.speaker.output import Output, apply_volume
from loa.speaker.playout import CaptureTimes, Playout
from loa.speaker.redundancy import receive
from loa.speaker.reports import ReceptionStats

log = logging.getLogger(__name__)

HELLO_INTERVAL_S = 0.5
WELCOME_TIMEOUT_S = 10.0
TAIL_FRAMES = 3  # concealment frames played after an underrun, so the sound fades, not clicks
MAX_LAG_S = 0.2  # playout this far behind its deadlines resyncs instead of catching up
# Path failover (docs/DESIGN.md, "Path failover"): no audio this long while on air, or a
# keepalive unanswered, and the path is re-punched: fresh hellos every 0.1 s for 0.6 s, then
# WebSocket audio, with UDP probed again after 5 s, 10 s, ... up to udp_reprobe_s.
AUDIO_GAP_S = 0.5
WATCH_TICK_S = 0.05
REPUNCH_INTERVAL_S = 0.1
REPUNCH_WITHIN_S = 0.6
REPROBE_AFTER_FAILURE_S = 5.0
PING_WITHIN_S = 1.5  # UDP failed: the WebSocket must answer a ping this soon, else next server
WS_CLOSE_S = 1.0  # closing a WebSocket whose server is unreachable waits no longer
# Clock probes (docs/DESIGN.md, "Synchronised playout")
PROBE_BURST = 32
PROBE_BURST_GAP_S = 0.02
PROBE_FAST_S = 0.25
PROBE_FAST_FOR_S = 60.0
PROBE_INTERVAL_S = 3.0
SENT_KEPT = 128  # hellos/keepalives/probes awaiting their ack
LEVELS_KEPT = 16  # level changes remembered for the audio still buffered
_U64 = (1 << 64) - 1


class SpeakerState(StrEnum):
    CONNECTING = "connecting"
    PROBING = "probing"  # control channel up, UDP path not proven yet
    UDP = "udp"
    WS = "ws"
    BACKOFF = "backoff"
    REFUSED = "refused"  # the server refused the hello; waiting backoff_max_s
    STOPPED = "stopped"


class _Moved(Exception):
    """The server redirected us before welcoming us."""

    def __init__(self, servers: tuple[str, ...]) -> None:
        super().__init__(f"redirected to {servers[0]}")
        self.servers = servers


class SpeakerRefused(LoaError, PermissionError):
    """The server refused the hello: ``code`` is its error code (e.g. ``bad_token``)."""

    code = "speaker_refused"


@dataclass(frozen=True, slots=True)
class AudioMeta:
    # "normal", "retx" (played after a NACK), "red" (a redundant copy), "fec", "plc", "stretch"
    kind: str
    broadcast: str | None
    volume: int
    muted: bool
    # when the frame's first sample is heard (the speaker's clock; None: a resync cut it)
    heard_at: float | None = None
    captured_at: float | None = None  # its capture time (server Unix time), if known


class _Link:
    """One connection: its WebSocket, UDP socket, the server's address and the UDP state."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, welcome: Welcome, server: tuple[Any, ...]
    ) -> None:
        self.ws = ws
        self.welcome = welcome
        self.server = server[:2]
        self.udp: asyncio.DatagramTransport | None = None
        self.mode: str | None = None  # "udp" or "ws" once decided
        self.acked = asyncio.Event()
        self.proven = asyncio.Event()  # UDP worked once: clock probes may start
        self.ponged = asyncio.Event()  # a pong to our ping (we answer the server's pings)
        self.last_ack = 0
        # control counter -> when sent (the speaker's clock): round trips and probes' t1
        self.sent_at: dict[int, float] = {}
        self.watch_from = 0.0  # when UDP was (re)proven: no audio is missed before it
        self.audio_gap_s = AUDIO_GAP_S


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.speaker._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.speaker.udp_errors += 1  # ICMP unreachable and friends: the prober retries


class Speaker:
    """Driven by ``run()``; ``stop()`` ends it. Counters are cumulative over reconnects."""

    def __init__(
        self,
        url: str,
        token: str,
        output: Output,
        *,
        status_interval_s: float = 5.0,
        ws_fallback_after_s: float = 3.0,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        quick_retry_s: float = 2.0,
        quick_window_s: float = 120.0,
        force_ws: bool = False,
        udp_reprobe_s: float = 30.0,
        stable_after_s: float = 10.0,
        fatal_auth: bool = False,
        nack: bool = True,
        on_audio: Callable[[Int16Array, AudioMeta], None] | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        sync: bool = True,
        clock_method: Method = "floors",
    ) -> None:
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_min_s <= backoff_max_s")
        if quick_retry_s <= 0 or quick_window_s < 0:
            raise ValueError("need quick_retry_s > 0 and quick_window_s >= 0")
        self.url = url.rstrip("/")
        self.servers: tuple[str, ...] = (self.url,)  # the cluster's, in order, once welcomed
        self._lost = ""  # the server just lost, named in the next hello
        self._moved: tuple[str, ...] | None = None  # a redirect received while connected
        self._redirects_in_row = 0
        self.token = token
        self.output = output
        self.status_interval_s = status_interval_s
        self.ws_fallback_after_s = ws_fallback_after_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.quick_retry_s = quick_retry_s
        self.quick_window_s = quick_window_s
        self.force_ws = force_ws
        self.udp_reprobe_s = udp_reprobe_s
        self.stable_after_s = stable_after_s
        self.fatal_auth = fatal_auth
        self.nack = nack  # ask for lost packets again (RFC 4585 NACK); off only to compare
        self.on_audio = on_audio
        self._rng = rng or random.Random()
        self._clock = clock
        self.sync = sync  # play in step when the server answers clock probes
        self.estimator = ClockEstimator(method=clock_method)
        self.captures = CaptureTimes()
        self.playout = Playout()
        self.synced = False  # the last frame played had a playout error to correct
        self._sync_on = False  # this session plays in step (the welcome's clock_probes)
        self._next_ts: int | None = None  # RTP timestamp of the frame after the last played
        # (server time from which, broadcast, volume, muted): levels by capture time
        self._levels: list[tuple[float, str | None, int, bool]] = []
        self._level_from = float("-inf")  # the levels the last frame played with apply since
        self.jitter = JitterBuffer()
        self.jitter.asking = nack
        self.reports = ReceptionStats()  # RTCP: our receiver reports, the server's SRs
        self.rtcp_ssrc = self._rng.getrandbits(32)
        self.state = SpeakerState.STOPPED
        self.endpoint: str | None = None
        self.channel = ClientChannel(token, f"loa-speaker/{__version__}")
        self._counter = 0  # UDP control counter: one per process, strictly increasing
        self._link: _Link | None = None
        self._stopping = asyncio.Event()
        self._fatal: SpeakerRefused | None = None
        self._last_problem: str | None = None
        self._tail = 0
        self._connected_at: float | None = None
        self.connects = self.reconnects = self.acks = self.hellos = self.keepalives = 0
        self.foreign_packets = self.bad_packets = self.udp_errors = 0
        self.udp_audio = self.ws_audio = self.decode_errors = self.frames_out = 0
        self.playout_resyncs = self.status_sent = self.rtcp_sent = self.redirects = 0
        self.nacks_sent = self.path_failures = self.repunches = self.probes = 0
        self.unplaceable = 0  # frames more than D late against their capture time
        self.red_malformed = self.red_filled = 0  # RED packets dropped; slots RED filled
        self._udp_audio_at = float("-inf")  # when RTP last came by UDP
        self.backoff_delays: list[float] = []

    # --- public --------------------------------------------------------------------------

    @property
    def volume(self) -> int:
        """The speaker's own volume, as the server last set it."""
        return self.channel.volume

    @property
    def muted(self) -> bool:
        return self.channel.muted

    @property
    def broadcast(self) -> str | None:
        """What the server says plays now."""
        return self.channel.broadcast

    @property
    def effective_volume(self) -> int:
        return self.channel.effective_volume

    def stop(self) -> None:
        self._stopping.set()

    @property
    def clock(self) -> Clock:
        """The speaker's own clock (the event loop's unless one was given)."""
        if self._clock is None:
            self._clock = HostClock(asyncio.get_running_loop().time)
        return self._clock

    def backoff_delay(self, attempt: int, down_s: float = float("inf")) -> float:
        """Full jitter. Within ``quick_window_s`` of losing the connection (``down_s``):
        uniform(0, min(quick_retry_s, max)); after it: uniform(0, min(max, min * 2**attempt))."""
        if down_s < self.quick_window_s:
            return self._rng.uniform(0.0, min(self.quick_retry_s, self.backoff_max_s))
        cap = min(self.backoff_max_s, self.backoff_min_s * 2.0 ** min(attempt, 30))
        return self._rng.uniform(0.0, cap)

    def status(self) -> str:
        """The status report to send now (JSON text)."""
        jb = self.jitter
        return self.channel.status(
            received=jb.received,
            played=jb.played,
            lost=jb.lost,
            recovered=jb.recovered,
            retransmitted=jb.retransmitted,
            redundant=jb.redundant,
            red_malformed=self.red_malformed,
            concealed=jb.concealed,
            nacked=jb.nacked,
            stretched=jb.stretched,
            path_failures=self.path_failures,
            late=jb.late,
            jitter_ms=round(jb.jitter_ms, 2),
            buffer_ms=jb.buffer_ms,
            **self.sync_status(),
        )

    def sync_status(self) -> dict[str, Any]:
        """Synchronised playout, for the status report: the server clock's offset and the
        probes' round trip (ms, null before a probe was answered), the last playout error
        (ms, > 0 late; null while not in step) and whether the last frame was in step."""
        est = self.estimator.estimate
        error = self.playout.corrector.last_error_s
        return {
            "clock_offset_ms": None if est is None else round(est.offset * 1000, 3),
            "clock_rtt_ms": None if est is None else round(est.delay * 1000, 3),
            "playout_error_ms": round(error * 1000, 3)
            if self.synced and error is not None
            else None,
            "synced": self.synced,
        }

    async def run(self) -> None:
        """Play until ``stop()`` (returns) or cancellation (sockets and output closed)."""
        await self.output.open()
        try:
            async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as tg:
                tasks = (tg.create_task(self._playout()), tg.create_task(self._connect_loop(http)))
                await self._stopping.wait()
                for task in tasks:
                    task.cancel()
        finally:
            self.state = SpeakerState.STOPPED
            await self.output.close()
        if self._fatal is not None:
            raise self._fatal

    # --- connection ----------------------------------------------------------------------

    async def _connect_loop(self, http: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        lost_at: float | None = None  # when the current outage began
        while True:
            self.state = SpeakerState.CONNECTING
            self._connected_at = None
            delay: float | None = None
            self._moved = None
            try:
                await self._session(http)
                problem = "the server closed the connection"
            except _Moved as exc:
                self._moved = exc.servers
            except SpeakerRefused as exc:
                if self.fatal_auth:
                    self._fatal = exc
                    self._stopping.set()
                    return
                problem = f"refused: {exc.message}"
                self._report(problem, logging.ERROR, f"; retrying every ~{self.backoff_max_s:g} s")
                self.state = SpeakerState.REFUSED
                delay = self.backoff_max_s * self._rng.uniform(0.5, 1.0)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if self._moved is not None:
                delay = self._follow(self._moved)
            elif delay is None:
                self._next_server()
                up = self._connected_at
                now = loop.time()
                if up is not None:  # was connected: a new outage begins now
                    lost_at = now
                    if now - up >= self.stable_after_s:
                        attempt = 0
                elif lost_at is None:
                    lost_at = now
                delay = self.backoff_delay(attempt, now - lost_at)
                attempt += 1
                self.state = SpeakerState.BACKOFF
                self._report(problem, logging.WARNING, "")
                log.info("reconnecting in %.2f s", delay)
            self.reconnects += 1
            self.backoff_delays.append(delay)
            await asyncio.sleep(delay)

    def _follow(self, servers: tuple[str, ...]) -> float:
        """A redirect: its first server next, after a short wait growing with repeats."""
        self.redirects += 1
        self.servers, self.url, self._lost = servers, servers[0], ""
        cap = min(self.quick_retry_s, 0.25 * 2.0 ** min(self._redirects_in_row, 10))
        self._redirects_in_row += 1
        log.info("[ep=%s] redirected to %s", self.endpoint, self.url)
        return self._rng.uniform(0.0, cap)

    def _next_server(self) -> None:
        """The connection to ``url`` was lost or not made: the next server in the list."""
        self._lost = self.url
        if len(self.servers) > 1:
            at = self.servers.index(self.url) if self.url in self.servers else -1
            self.url = self.servers[(at + 1) % len(self.servers)]

    def _report(self, problem: str, level: int, suffix: str) -> None:
        """Log a problem once; the same one again only at debug level."""
        if problem != self._last_problem:
            log.log(level, "%s: %s%s", self.url, problem, suffix)
            self._last_problem = problem
        else:
            log.debug("%s: %s (again)", self.url, problem)

    async def _session(self, http: aiohttp.ClientSession) -> None:
        async with http.ws_connect(
            f"{self.url}/api/v1/speaker", heartbeat=30.0, autoping=False,
            timeout=aiohttp.ClientWSTimeout(ws_close=WS_CLOSE_S),
        ) as ws:  # fmt: skip
            await ws.send_str(self.channel.hello(self._lost, red=True))
            welcome = await self._read_welcome(ws)
            server = await self._resolve(welcome)
            link = _Link(ws, welcome, server)
            self._start_session(welcome)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(_bind_host(server[0]), 0)
            )
            link.udp = transport
            self._link = link
            try:
                async with asyncio.TaskGroup() as tg:
                    helpers = (
                        tg.create_task(self._udp_loop(link)),
                        tg.create_task(self._status_loop(link)),
                        tg.create_task(self._probe_loop(link)),
                    )
                    await self._read_ws(link)
                    for task in helpers:
                        task.cancel()
            finally:
                self._link = None
                transport.close()
            if ws.close_code == CLOSE_REPLACED:
                log.warning("[ep=%s] replaced by another connection with our token", self.endpoint)

    async def _read_welcome(self, ws: aiohttp.ClientWebSocketResponse) -> Welcome:
        msg = await ws.receive(timeout=WELCOME_TIMEOUT_S)
        if msg.type is aiohttp.WSMsgType.TEXT:
            events = self.channel.on_text(msg.data)  # ValueError: not a welcome
        else:
            events = self.channel.on_close(ws.close_code)
        match events:
            case [Welcomed(welcome=welcome)]:
                return welcome
            case [Refused(code=code, message=text)]:
                raise SpeakerRefused(f"{code}: {text}", server_code=code)
            case [Redirected(servers=servers)]:
                raise _Moved(servers)
        raise ConnectionError(f"closed before welcome (code {ws.close_code})")

    async def _resolve(self, welcome: Welcome) -> tuple[Any, ...]:
        host = welcome.udp_host
        if host in ("", "0.0.0.0", "::"):
            host = URL(self.url).host or "127.0.0.1"
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, welcome.udp_port, type=socket.SOCK_DGRAM
        )
        if not infos:
            raise OSError(f"cannot resolve {host}")
        return infos[0][4]

    def _start_session(self, welcome: Welcome) -> None:
        self.connects += 1
        self._connected_at = asyncio.get_running_loop().time()
        self._last_problem = None
        self._lost, self._redirects_in_row = "", 0
        if welcome.servers:
            self.servers = welcome.servers
        self.endpoint = welcome.endpoint
        self.jitter.reset()
        self.jitter.playout_delay_ms = welcome.playout_delay_ms
        self.jitter.asking = self.nack and not self.force_ws
        self.jitter.expect_gaps(self.clock.now())
        self.reports.reset(welcome.ssrc)
        self.estimator.reset()  # another node of a cluster may run another clock
        self.captures.reset()
        self._levels = []
        self._levels_changed()  # the welcome's levels, from the start
        self._sync_on = self.sync and welcome.clock_probes and not self.force_ws
        self.jitter.synced = False  # until audio is on UDP (no SRs on the WebSocket)
        self._next_ts = None
        self.state = SpeakerState.PROBING
        log.info(
            "[ep=%s] connected to %s, session %s", welcome.endpoint, self.url, welcome.session.hex()
        )

    async def _read_ws(self, link: _Link) -> None:
        async for msg in link.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.ws_audio += 1
                self._on_rtp(msg.data, link)
            elif msg.type is aiohttp.WSMsgType.TEXT:
                for event in self.channel.on_text(msg.data):
                    self._on_event(event)
            elif msg.type is aiohttp.WSMsgType.PING:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                    await link.ws.pong(msg.data)
            elif msg.type is aiohttp.WSMsgType.PONG:
                link.ponged.set()

    def _on_event(self, event: Any) -> None:
        match event:
            case LevelsChanged(why=why, since=since):
                self._levels_changed(since)
                log.info("[ep=%s] %s", self.endpoint, why)
            case DropAudio():
                self.jitter.flush(self.clock.now())
                self.output.discard()
                self.playout.reset()
                log.info("[ep=%s] stop: buffered audio dropped", self.endpoint)
            case TransportLost(reason=reason):
                log.info("[ep=%s] the server lost our UDP path: %s", self.endpoint, reason)
            case ServerError(message=message):
                log.warning("[ep=%s] server error: %s", self.endpoint, message)
            case Redirected(servers=servers, reason=reason):  # the server closes next
                self._moved = servers
                log.info("[ep=%s] moved to %s: %s", self.endpoint, servers[0], reason)
            case Ignored(what=what):  # a newer server may say more; a broken text is counted
                if what == NOT_JSON:
                    self.bad_packets += 1
                log.debug("[ep=%s] ignored: %s", self.endpoint, what)

    async def _send(self, link: _Link, text: str) -> None:
        """Send on the control channel; a closed socket is the reader's business."""
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await link.ws.send_str(text)

    async def _status_loop(self, link: _Link) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            await self._send(link, self.status())
            self.status_sent += 1
            self._send_receiver_report(link)

    def _send_receiver_report(self, link: _Link) -> None:
        """An RTCP RR (loa.speaker.reports) to the server, on the UDP path while it is used."""
        if link.mode != "udp" or link.udp is None or link.udp.is_closing():
            return
        now = self.clock.now()
        report = self.reports.receiver_report(self.rtcp_ssrc, now, f"loa-speaker@{self.endpoint}")
        if report is not None:
            link.udp.sendto(report, link.server)
            self.rtcp_sent += 1

    # --- UDP -----------------------------------------------------------------------------

    async def _udp_loop(self, link: _Link) -> None:
        """Prove UDP, use it, watch it; on failure re-punch at once, else fall back to the
        WebSocket and probe again, soon after a failure mid-stream (docs/DESIGN.md,
        "Path failover")."""
        if self.force_ws:
            await self._use(link, "ws")
            return
        reprobe = self.udp_reprobe_s
        proven = await self._probe(link, HELLO_INTERVAL_S, self.ws_fallback_after_s)
        while True:
            if proven:
                await self._use(link, "udp")
                why = await self._watch(link)
                self.path_failures += 1
                log.warning("[ep=%s] UDP path failing (%s): re-punching", self.endpoint, why)
                proven = await self._probe(link, REPUNCH_INTERVAL_S, REPUNCH_WITHIN_S)
                if not proven and not await self._answers(link):
                    log.warning("[ep=%s] the server answers neither UDP nor the WebSocket: "
                                "next server", self.endpoint)  # fmt: skip
                    await link.ws.close()  # the reader ends; the connect loop moves on
                    return
                self.repunches += proven
                reprobe = min(REPROBE_AFTER_FAILURE_S, self.udp_reprobe_s)
                continue
            await self._use(link, "ws")
            await asyncio.sleep(reprobe)
            proven = await self._probe(link, HELLO_INTERVAL_S, self.ws_fallback_after_s)
            reprobe = min(2 * reprobe, self.udp_reprobe_s)

    async def _answers(self, link: _Link) -> bool:
        """Does the server answer a WebSocket ping within ``PING_WITHIN_S``?"""
        link.ponged.clear()
        try:
            await link.ws.ping()
        except (aiohttp.ClientError, ConnectionError):
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PING_WITHIN_S):
                await link.ponged.wait()
            return True
        return False

    async def _use(self, link: _Link, mode: str) -> None:
        if link.mode == mode:
            return
        if mode == "ws" or link.mode == "ws":
            await self._send(link, self.channel.transport(mode))
        link.mode = mode
        if mode == "udp":
            link.proven.set()
        self.jitter.asking = self.nack and mode == "udp"  # NACKs go by UDP only
        self.jitter.synced = self._sync_on and mode == "udp"
        self.state = SpeakerState.UDP if mode == "udp" else SpeakerState.WS
        log.info("[ep=%s] audio over %s", self.endpoint, "UDP" if mode == "udp" else "WebSocket")

    async def _probe(self, link: _Link, interval: float, within: float) -> bool:
        """Fresh signed hellos every ``interval`` until one is acked (True) or ``within``
        seconds pass. A hello from a new NAT mapping rebinds the session on the server."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        link.acked.clear()
        while True:
            self._send_control(link, DatagramType.HELLO)
            self.hellos += 1
            wait = min(interval, deadline - loop.time())
            if wait <= 0:
                return False
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the ack, and stop() then never ends the speaker.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await link.acked.wait()
                return True

    async def _watch(self, link: _Link) -> str:
        """Keepalives every keepalive_s while watching the path; returns why it looks dead:
        a keepalive unanswered for min(keepalive_s, ws_fallback_after_s), or no audio for
        ``audio_gap_s`` while the control channel says a broadcast is on air (the threshold
        doubles, up to 8 s, while re-punches bring acks but no audio: a source that is slow
        to start is not a dead path)."""
        loop = asyncio.get_running_loop()
        period = link.welcome.keepalive_s
        now = loop.time()
        next_send, answer_by = now + period, float("inf")
        link.watch_from = now
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            now = loop.time()
            if now >= next_send:
                next_send = now + period
                answer_by = now + min(period, self.ws_fallback_after_s)
                link.acked.clear()
                self._send_control(link, DatagramType.KEEPALIVE)
                self.keepalives += 1
            if link.acked.is_set():
                answer_by = float("inf")
            elif now >= answer_by:
                return "keepalive unanswered"
            heard = max(self._udp_audio_at, link.watch_from)
            if self.broadcast is not None and now - heard >= link.audio_gap_s:
                link.audio_gap_s = min(8.0, 2 * link.audio_gap_s)
                return "no audio while on air"

    async def _probe_loop(self, link: _Link) -> None:
        """Clock probes once UDP works (docs/DESIGN.md, "Synchronised playout"): a burst,
        then every PROBE_FAST_S for PROBE_FAST_FOR_S, then every PROBE_INTERVAL_S. Only
        to a server that answers them, and only while audio is on UDP."""
        if not link.welcome.clock_probes or not self.sync or self.force_ws:
            return
        await link.proven.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(PROBE_BURST):
            self._send_control(link, DatagramType.KEEPALIVE, probe=True)
            await asyncio.sleep(PROBE_BURST_GAP_S)
        while True:
            fast = loop.time() - started < PROBE_FAST_FOR_S
            await asyncio.sleep(PROBE_FAST_S if fast else PROBE_INTERVAL_S)
            if link.mode == "udp":
                self._send_control(link, DatagramType.KEEPALIVE, probe=True)

    def _send_control(self, link: _Link, kind: DatagramType, *, probe: bool = False) -> None:
        if link.udp is None or link.udp.is_closing():
            return
        self._counter += 1
        w = link.welcome
        while len(link.sent_at) >= SENT_KEPT:  # the oldest went unanswered
            del link.sent_at[next(iter(link.sent_at))]
        sent = link.sent_at[self._counter] = self.clock.now()
        times: tuple[int, ...] = ()
        if probe:
            times = (_micros(sent),)
            self.probes += 1
        link.udp.sendto(
            bytes(ControlDatagram.signed(kind, w.session, self._counter, w.key, times)),
            link.server,
        )

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        link = self._link
        if link is None:
            return
        if addr[:2] != link.server:
            self.foreign_packets += 1
            return
        if is_rtcp(data):  # the server's sender reports share the port (RFC 5761)
            try:
                if self.reports.on_rtcp(data, self.clock.now()):
                    self.captures.report(*self.reports.last_sr)
            except ValueError:
                self.bad_packets += 1
            return
        if not looks_like_control(data):
            self.udp_audio += 1
            self._udp_audio_at = asyncio.get_running_loop().time()
            link.audio_gap_s = AUDIO_GAP_S
            self._on_rtp(data, link)
            return
        try:
            dgram = ControlDatagram.parse(data)
        except ValueError:
            self.bad_packets += 1
            return
        w = link.welcome
        if (
            dgram.type is not DatagramType.ACK
            or dgram.session != w.session
            or dgram.counter not in link.sent_at  # never sent, answered already, or too old
            or not dgram.verify(w.key)
        ):
            self.bad_packets += 1
            return
        arrived = self.clock.now()
        sent = link.sent_at.pop(dgram.counter)
        link.last_ack = max(link.last_ack, dgram.counter)
        self.acks += 1
        self.jitter.observe_rtt(arrived - sent)  # until retransmissions measure it
        if len(dgram.times) == 3 and dgram.times[0] == _micros(sent):
            _, t2, t3 = dgram.times
            self.estimator.add(Probe(sent, unix_time(t2), unix_time(t3), arrived))
        link.acked.set()

    def _on_rtp(self, data: bytes, link: _Link) -> None:
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.bad_packets += 1
            return
        w = link.welcome
        pt = packet.payload_type
        if (
            (pt != w.payload_type and pt != w.red_payload_type)
            or packet.ssrc != w.ssrc
            or not packet.payload
        ):
            self.bad_packets += 1
            return
        now = self.clock.now()
        if packet.marker:  # a new segment: its capture times come from its own SR
            self.captures.segment(packet.timestamp)
        got = receive(
            self.jitter, packet, now, opus_type=w.payload_type, red_type=w.red_payload_type
        )
        if not got.ok:
            self.red_malformed += 1
            return
        self.red_filled += got.filled
        self.reports.on_rtp(packet.sequence, packet.timestamp, now)
        self._send_nacks(now)

    def _send_nacks(self, now: float) -> None:
        """Ask for the gaps the jitter buffer says are due: an RFC 4585 generic NACK, reduced
        size (RFC 5506), at once: the playout delay is the whole budget for a round trip."""
        link = self._link
        lost = self.jitter.take_nacks(now)
        if not lost or link is None or link.mode != "udp" or not self.nack:
            return
        if link.udp is not None and not link.udp.is_closing():
            nack = GenericNack(self.rtcp_ssrc, link.welcome.ssrc, tuple(lost))
            link.udp.sendto(bytes(nack), link.server)
            self.nacks_sent += 1

    # --- playout -------------------------------------------------------------------------

    async def _playout(self) -> None:
        """Pop the jitter buffer once per frame on the output's timeline; decode; write.

        ``heard`` is when the next sample written will be heard, on the speaker's clock: it
        advances by what is written (a frame's time while nothing plays), so frames are
        written as the output reaches them, and a resync's skip takes no time."""
        decoder = OpusDecoder()
        clock = self.clock
        heard = clock.now()
        while True:
            ahead = heard - clock.now()
            if ahead > 0:
                await asyncio.sleep(clock.host_seconds(ahead))
            elif ahead < -MAX_LAG_S:
                self.playout_resyncs += 1
                heard = clock.now()
                self.playout.reset()
            written = await self._tick(decoder, heard)
            heard += FRAME_S if written is None else written / SAMPLE_RATE
            if written == 0:
                await asyncio.sleep(0)  # a resync skipping ahead: the next frame at once

    async def _tick(self, decoder: OpusDecoder, now: float) -> int | None:
        """One playout decision at ``now`` (when its first sample is heard): the samples
        written, None when there was nothing to play."""
        self._send_nacks(now)  # gaps whose hold-off ended since the last packet
        item = self.jitter.pop(now)
        samples = item.samples
        if isinstance(item, Wait):
            if self._tail <= 0:
                self.synced = False
                return None
            self._tail -= 1  # fade out through concealment rather than stop dead
        else:
            self._tail = TAIL_FRAMES
        ts = self._next_ts
        try:
            match item:
                case Play(
                    payload=payload,
                    retransmitted=again,
                    redundant=copy,
                    timestamp=ts,
                    marker=marker,
                ):
                    if marker:  # a new talkspurt, most often another encoder: its own state
                        decoder.reset()  # (libopus would conceal from the old one's later)
                    pcm = decoder.decode(payload)
                    kind = "retx" if again else "red" if copy else "normal"
                case Recover(next_payload=payload):
                    pcm, kind = decoder.decode_fec(payload, samples), "fec"
                case Conceal() | Wait():
                    pcm, kind = decoder.decode_plc(samples), "plc"
                case Stretch():
                    pcm, kind, ts = decoder.decode_plc(samples), "stretch", None
        except ValueError:
            self.decode_errors += 1
            pcm, kind = decoder.decode_plc(samples), "plc"
        if ts is not None:
            self._next_ts = (ts + len(pcm)) & 0xFFFF_FFFF
        out, heard_at, captured = self._place(pcm, ts, now)
        await self._emit(out, kind, heard_at, captured)
        return len(out)

    def _place(
        self, pcm: Int16Array, ts: int | None, heard: float
    ) -> tuple[Int16Array, float | None, float | None]:
        """``pcm`` as it goes out in step (docs/DESIGN.md, "Synchronised playout"), when its
        first sample is heard (None: a resync cut it) and when it was captured."""
        est = self.estimator.estimate
        captured = None
        error = None
        if self._sync_on and ts is not None and est is not None:
            captured = self.captures.capture(ts)
            if captured is not None and not self.playout.skipping:
                delay_s = self.jitter.playout_delay_ms / 1000.0
                error = est.to_server(heard) - (captured + delay_s)
                if error > delay_s:  # later than D: no buffer in step can be; a stale
                    error = captured = None  # mapping, or audio seconds late: play it,
                    self.unplaceable += 1  # out of step, rather than skip seconds of it
        skipping = self.playout.skipping
        inserted, skipped = self.playout.inserted, self.playout.skipped
        out = self.playout.frame(pcm, error, 0.0 if est is None else est.drift)
        self.synced = captured is not None and (error is not None or skipping)
        if self.playout.skipped != skipped:
            return out, None, captured  # a resync skipped the frame's start
        return out, heard + (self.playout.inserted - inserted) / SAMPLE_RATE, captured

    async def _emit(
        self, pcm: Int16Array, kind: str, heard_at: float | None, captured: float | None
    ) -> None:
        if not len(pcm):
            return
        broadcast, volume, muted = self._levels_for(captured)
        out = apply_volume(pcm, volume, muted)
        self.frames_out += 1
        if self.on_audio is not None:
            self.on_audio(out, AudioMeta(kind, broadcast, volume, muted, heard_at, captured))
        await self.output.write(out)

    def _levels_changed(self, since: float | None = None) -> None:
        """What plays and at which level changed on the control channel. In step, audio is
        heard D after its capture: the change applies to frames captured from ``since``
        (a switch's time, which its ``playing`` message says: it goes after the new
        broadcast's first frame) or else from when the server sent it (now on its clock,
        less half the round trip), not to the tail of the old broadcast still in the buffer
        (an emergency's volume on the programme's last 300 ms). Otherwise at once."""
        state = (self.channel.broadcast, self.channel.effective_volume, self.channel.audible_muted)
        est = self.estimator.estimate
        if not self._sync_on or est is None or not self._levels:
            self._levels = [(float("-inf"), *state)]
            self._level_from = float("-inf")
            return
        sent = est.to_server(self.clock.now()) - est.delay / 2
        self._levels.append((sent if since is None else min(since, sent), *state))
        del self._levels[:-LEVELS_KEPT]

    def _levels_for(self, captured: float | None) -> tuple[str | None, int, bool]:
        """(broadcast, volume, muted) for a frame captured at ``captured`` (server time)."""
        if captured is None or not self._levels:
            return self.broadcast, self.channel.effective_volume, self.channel.audible_muted
        at = max(captured, self._level_from)  # audio goes forward: never back to older levels
        for since, broadcast, volume, muted in reversed(self._levels):
            if at >= since:
                self._level_from = since
                return broadcast, volume, muted
        return self._levels[0][1:]


def _micros(local_s: float) -> int:
    """A probe's t1 on the wire: the speaker's clock in µs (opaque to the server)."""
    return round(local_s * 1_000_000) & _U64


def _bind_host(server_ip: str) -> str:
    """Loopback servers get a loopback socket; anything else the wildcard of its family."""
    ip = ipaddress.ip_address(server_ip.split("%")[0])
    if ip.version == 6:
        return "::1" if ip.is_loopback else "::"
    return "127.0.0.1" if ip.is_loopback else "0.0.0.0"
