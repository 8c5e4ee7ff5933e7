"""The radio relay source ("tiếp sóng"): a network stream (Icecast/HTTP, HLS, RTSP) as frames.

A reader thread owned by the source opens the URL with PyAV, decodes, resamples to 48 kHz
mono s16 and cuts exact 960-sample frames into a bounded queue. ``read()`` never blocks: it
hands out a decoded frame when one is ready and a silent one (``silent_fill=True``) while the
upstream is down, reconnecting or starved, so the broadcast's timeline never has a gap.

HTTP(S) bytes (including HLS playlists and segments) travel over sockets this module owns,
handed to av through ``io_open``: ``aclose()`` shuts those sockets down, which wakes a reader
blocked on a stalled server at once. av's own interrupt callback can only fire on its timeout
and a container cannot be closed while another thread reads it. RTSP stays with FFmpeg's
network code and av's ``timeout``, so closing an RTSP relay can take up to
``read_timeout_s``.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import queue
import random
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer

from loa.codecs import FRAME_S, FRAME_SAMPLES
from loa.errors import LoaError, SourceError
from loa.streamer.base import Frame
from loa.streamer.decode import decode_frames
from loa.streamer.targets import TargetPolicy

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "rtsp", "rtsps")
STABLE_AFTER_S = 10.0  # a connection that played this long resets the backoff
MAX_REDIRECTS = 5
_MAX_HEADER_LINES = 100
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_POLL_S = 0.1  # how often a blocked reader thread looks at the stop flag


class State(enum.Enum):
    """What the connection to the upstream is doing. Audio already queued keeps playing
    after a drop, so the first frames read while RECONNECTING may still be real audio."""

    CONNECTING = "connecting"
    PLAYING = "playing"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class _Stopped(Exception):
    """The source is closing: unwinds the reader thread from wherever it is."""


class Backoff:
    """Delays between reconnects: exponential, with full jitter so relays (and the servers
    they hammer) do not retry in lockstep; back to the minimum after a connection that
    played ``STABLE_AFTER_S`` of audio."""

    def __init__(
        self, min_s: float, max_s: float, rand: Callable[[float, float], float] | None = None
    ) -> None:
        self.min_s, self.max_s = min_s, max_s
        self._rand = rand or random.Random().uniform
        self._attempt = 0

    def next(self, played_s: float) -> float:
        """The wait before the next attempt, after a connection that played ``played_s``."""
        if played_s >= STABLE_AFTER_S:
            self._attempt = 0
        ceiling = min(self.max_s, self.min_s * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return self._rand(self.min_s, ceiling)


def redact(url: str) -> str:
    """The URL without its password, fit for logs and names."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        got = f"scheme {scheme!r}" if scheme else "no scheme"
        raise SourceError(
            f"relay URL {redact(url)!r} has {got}: use http, https, rtsp or rtsps",
            url=redact(url),
        )
    if not parts.hostname:
        raise SourceError(f"relay URL {redact(url)!r} has no host", url=redact(url))
    return scheme


class UrlSource:
    """A radio relay; a reader thread drives it, ``read()`` takes what the thread decoded.

    ``live`` is False (the broadcast paces it by deadlines) and it is not ``resumable``: the
    radio goes on while nobody listens. A finite stream that ends counts as a drop and is
    reconnected: a radio stream is not supposed to end, only ``aclose()`` ends this source.

    For operators and ``/metrics``: ``state``, ``reconnects`` (connection attempts after the
    first), ``last_error`` (why the last connection failed or ended, password hidden) and
    ``silent_frames`` (frames made up to keep time).
    """

    live = False
    resumable = False

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        open_timeout_s: float = 5.0,
        read_timeout_s: float = 5.0,
        buffer_s: float = 2.0,
        targets: TargetPolicy | None = None,
    ) -> None:
        self._scheme = _check_url(url)
        # -- edges: refused targets (loopback, link-local …) unless relay.url_allow_networks
        self._targets = targets or TargetPolicy()
        self._targets.check_literal(url)
        # -- end edges
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise SourceError("need 0 < reconnect_min_s <= reconnect_max_s")
        if open_timeout_s <= 0 or read_timeout_s <= 0:
            raise SourceError("open_timeout_s and read_timeout_s must be positive")
        if buffer_s < 2 * FRAME_S:
            raise SourceError(f"buffer_s must hold at least two frames ({2 * FRAME_S:g} s)")
        self._url = url
        self.url = redact(url)
        self.name = name or self.url
        self._log_prefix = f"[relay {self.url}]"
        self._reconnect_s = (reconnect_min_s, reconnect_max_s)
        self._timeouts = (open_timeout_s, read_timeout_s)
        capacity = max(2, round(buffer_s / FRAME_S))
        self._frames: queue.Queue[np.ndarray] = queue.Queue(maxsize=capacity)
        self._prebuffer = capacity // 2  # frames queued before playing out, after an underrun
        self._primed = False
        self._opener = _HttpOpener(open_timeout_s, read_timeout_s, self._targets)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._state = State.CONNECTING
        self._logged_error = ""
        self._pts = 0
        self._connection_frames = 0
        self.reconnects = 0
        self.last_error = ""
        self.silent_frames = 0

    @property
    def state(self) -> State:
        return self._state

    def start(self) -> None:
        """Start the reader thread now rather than on the first ``read()``."""
        if self._thread is not None or self._closed:
            return
        log.info("%s connecting", self._log_prefix)
        self._thread = threading.Thread(target=self._run, name=f"relay {self.url}", daemon=True)
        self._thread.start()

    async def read(self) -> Frame | None:
        """The next frame at once: decoded audio, or silence while the upstream is away."""
        if self._closed:
            return None
        self.start()
        pcm = self._take()
        pts, self._pts = self._pts, self._pts + FRAME_SAMPLES
        if pcm is None:
            self.silent_frames += 1
            return Frame(np.zeros(FRAME_SAMPLES, dtype=np.int16), pts, silent_fill=True)
        return Frame(pcm, pts)

    def _take(self) -> np.ndarray | None:
        # A small jitter buffer: after an underrun, play out again only once half the queue
        # is full, so a bursty upstream (Ogg pages, HLS segments) does not stutter.
        if not self._primed:
            if self._frames.qsize() < self._prebuffer:
                return None
            self._primed = True
        try:
            return self._frames.get_nowait()
        except queue.Empty:
            self._primed = False
            return None

    async def aclose(self) -> None:
        """Stop and join the reader thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._opener.abort()  # wakes a reader blocked on a stalled or unreachable server
        thread = self._thread
        if thread is not None:
            # HTTP reads wake at once; RTSP waits for av's timeout, an HLS reader for its
            # playlist reload.
            await asyncio.to_thread(thread.join, max(self._timeouts) + 1.0)
            if thread.is_alive():
                log.error("%s reader thread still running after close", self._log_prefix)
        self._state = State.CLOSED
        log.info("%s closed", self._log_prefix)

    # --- the reader thread -------------------------------------------------------------

    def _run(self) -> None:
        """Connect, play until the stream drops, back off, connect again, until closed."""
        backoff = Backoff(*self._reconnect_s)
        while not self._stop.is_set():
            try:
                self._play_once()
                error = "stream ended"
            except _Stopped:
                break
            except Exception as exc:  # any failure is a drop: the relay's job is to retry
                error = _describe(exc).replace(self._url, self.url)  # av quotes the URL
            if self._stop.is_set():
                break
            self._dropped(error)
            if self._stop.wait(backoff.next(self._connection_frames * FRAME_S)):
                break
            self.reconnects += 1
        self._opener.close_all()

    def _play_once(self) -> None:
        """One connection: decode into the queue until the stream ends or fails."""
        self._connection_frames = 0
        try:
            container = self._open()
            try:
                self._decode(container)
            finally:
                container.close()
        finally:
            self._opener.close_all()  # av leaves a custom-I/O main input to us, even on error

    def _decode(self, container: InputContainer) -> None:
        if not container.streams.audio:
            raise SourceError(f"no audio stream in {self.url}")
        stream = container.streams.audio[0]
        for pcm in decode_frames(container, stream):  # a stream that stops decoding is a drop
            self._put(pcm)
            if self._state is not State.PLAYING:
                self._playing(stream)

    def _open(self) -> InputContainer:
        if self._scheme in ("http", "https"):
            self._opener.begin()
            # Persistent HLS connections would make FFmpeg reuse its own HTTP context,
            # which a custom-I/O input does not have.
            return av.open(self._url, "r", io_open=self._opener, container_options=_HLS_OPTIONS)
        # -- edges: FFmpeg resolves RTSP hosts itself; check what the name resolves to now
        parts = urlsplit(self._url)
        self._targets.check_resolved(parts.hostname or "", parts.port or 554)
        # -- end edges
        # RTP over the RTSP TCP connection: UDP seldom survives the NAT of a 4G uplink.
        return av.open(self._url, "r", container_options=_RTSP_OPTIONS, timeout=self._timeouts)

    def _put(self, pcm: np.ndarray) -> None:
        # Block while the queue is full: the broadcast paces reading, TCP paces the server.
        while not self._stop.is_set():
            try:
                self._frames.put(pcm, timeout=_POLL_S)
                self._connection_frames += 1
                return
            except queue.Full:
                continue
        raise _Stopped

    def _playing(self, stream: AudioStream) -> None:
        if self._stop.is_set():
            return
        self._state = State.PLAYING
        self._logged_error = ""
        ctx = stream.codec_context
        log.info(
            "%s playing %s %d Hz %s",
            self._log_prefix,
            ctx.name,
            ctx.sample_rate,
            ctx.layout.name,
        )

    def _dropped(self, error: str) -> None:
        self.last_error = error
        if self._stop.is_set():
            return
        if self._state is State.RECONNECTING and error == self._logged_error:
            log.debug("%s still failing: %s", self._log_prefix, error)
        else:
            verb = "lost" if self._state is State.PLAYING else "cannot connect"
            log.warning("%s %s: %s; reconnecting", self._log_prefix, verb, error)
        self._logged_error = error
        self._state = State.RECONNECTING


_HLS_OPTIONS = {"http_persistent": "0"}
_RTSP_OPTIONS = {"rtsp_transport": "tcp"}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LoaError):  # SourceError, and TargetRefused (edges)
        return exc.message
    return f"{type(exc).__name__}: {exc}"


# --- HTTP(S) for av, over sockets this module can cut ------------------------------------


class _Body:
    """One HTTP response body: the file-like object av reads through ``io_open``."""

    def __init__(
        self, opener: _HttpOpener, sock: socket.socket, reader: Any, length: int | None
    ) -> None:
        self.sock = sock
        self._opener = opener
        self._reader = reader
        self._remaining = length

    def read(self, size: int) -> bytes:
        if self._remaining is not None:
            size = min(size, self._remaining)
            if size <= 0:
                return b""
        try:
            data: bytes = self._reader.read1(size)  # what has arrived; never waits for more
        except TimeoutError:
            raise TimeoutError(f"no data for {self._opener.read_timeout_s:g} s") from None
        if self._remaining is not None:
            self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._opener.release(self)

    def shut(self) -> None:
        self._reader.close()
        self.sock.close()


class _Empty:
    """The body av gets for a nested open that failed."""

    def read(self, size: int) -> bytes:
        return b""

    def close(self) -> None:
        """Nothing to release: no socket was opened for this body."""


class _HttpOpener:
    """Opens http(s) URLs for av (its ``io_open``), HLS playlists and segments included.

    It owns every socket so that ``abort()``, from any thread, can shut them down: a read or
    connect blocked on a stalled server wakes at once. ``close_all()`` frees what av leaves
    open (the main input of a custom-I/O container)."""

    def __init__(self, open_timeout_s: float, read_timeout_s: float, targets: TargetPolicy) -> None:
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.targets = targets
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._bodies: set[_Body] = set()
        self._aborted = False
        self._opened = False

    def begin(self) -> None:
        """A new connection: its first open is the main input, later ones are nested."""
        self._opened = False

    def __call__(self, url: str, flags: int, options: dict[str, str]) -> _Body | _Empty:
        nested, self._opened = self._opened, True
        try:
            return self._get(url)
        except Exception as exc:
            if not nested:
                raise
            # A failed HLS segment or playlist reload: FFmpeg skips an empty body as it
            # would its own failed request. Raising would leave the exception stashed in av,
            # to surface later from an unrelated read and drop a healthy stream.
            log.debug("nested open of %s failed: %s", redact(url), _describe(exc))
            return _Empty()

    def _get(self, url: str) -> _Body:
        for _ in range(MAX_REDIRECTS + 1):
            sock, reader, status, headers = self._request(url)
            location = headers.get("location")
            if status in _REDIRECTS and location:
                self._forget(sock, reader)
                url = urljoin(url, location)
                continue
            if not 200 <= status < 300:
                self._forget(sock, reader)
                raise SourceError(f"HTTP {status} from {redact(url)}", status=status)
            length = headers.get("content-length", "")
            body = _Body(self, sock, reader, int(length) if length.isdigit() else None)
            with self._lock:
                self._bodies.add(body)
            return body
        raise SourceError(f"more than {MAX_REDIRECTS} redirects from {redact(url)}")

    def _request(self, url: str) -> tuple[socket.socket, Any, int, dict[str, str]]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"cannot fetch {redact(url)!r}: only http and https")
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        sock = self._connect(host, port)
        reader = None
        try:
            if parts.scheme == "https":
                sock = self._tls(sock, host)
            sock.sendall(_request_bytes(parts))
            sock.settimeout(self.read_timeout_s)
            reader = sock.makefile("rb")
            status, headers = _read_head(reader)
        except BaseException:
            self._forget(sock, reader)
            raise
        return sock, reader, status, headers

    def _connect(self, host: str, port: int) -> socket.socket:
        error: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            try:  # -- edges: never connect to a refused address, whatever DNS says now
                self.targets.check_address(host, str(addr[0]))
            except OSError as exc:  # TargetRefused
                error = exc
                continue
            sock = socket.socket(family, kind, proto)
            self._track(sock)  # before connect: on Linux, shutdown() aborts a pending connect
            try:
                sock.settimeout(self.open_timeout_s)
                sock.connect(addr)
                return sock
            except OSError as exc:
                self._forget(sock)
                error = exc
        if isinstance(error, TimeoutError):
            raise TimeoutError(f"connect to {host}:{port}: no answer")
        raise error

    def _tls(self, sock: socket.socket, host: str) -> socket.socket:
        import ssl  # only https relays pay for it

        self._forget(sock, close=False)
        try:
            context = ssl.create_default_context()
            tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        self._track(tls)  # tracked before the handshake, so abort() can cut that too
        try:
            tls.do_handshake()
        except BaseException:
            self._forget(tls)
            raise
        return tls

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            aborted = self._aborted
            if not aborted:
                self._socks.add(sock)
        if aborted:
            sock.close()
            raise _Stopped

    def _forget(self, sock: socket.socket, reader: Any = None, *, close: bool = True) -> None:
        with self._lock:
            self._socks.discard(sock)
        if close:
            if reader is not None:
                reader.close()
            sock.close()

    def release(self, body: _Body) -> None:
        with self._lock:
            known = body in self._bodies
            self._bodies.discard(body)
            self._socks.discard(body.sock)
        if known:
            body.shut()

    def close_all(self) -> None:
        with self._lock:
            bodies = list(self._bodies)
        for body in bodies:
            self.release(body)

    def abort(self) -> None:
        """Refuse new connections and wake every blocked read or connect."""
        with self._lock:
            self._aborted = True
            for sock in self._socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected yet, or the peer already closed it


def _request_bytes(parts: Any) -> bytes:
    # HTTP/1.0: the server closes after the body and never answers chunked.
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.0",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        "User-Agent: loa-relay/0.1",
        "Accept: */*",
    ]
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(token).decode()}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(reader: Any) -> tuple[int, dict[str, str]]:
    """Status code and headers (names lower-cased) of a response."""
    status_line = reader.readline(8193)
    # "ICY 200 OK" is what SHOUTcast servers answer instead of "HTTP/1.0 200 OK".
    fields = status_line.decode("latin-1").split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = reader.readline(8193)
        if not line.endswith(b"\n"):
            raise ConnectionError("response headers cut short or longer than 8 KiB a line")
        if line in (b"\r\n", b"\n"):
            return int(fields[1]), headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    raise ConnectionError(f"more than {_MAX_HEADER_LINES} response header lines")
