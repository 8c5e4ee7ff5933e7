"""One tree of frozen, validated settings, loaded once (file < environment < flags).

The tree is declared once, as msgspec Structs that refuse unknown keys: the TOML file is
converted into it by msgspec (types, ranges and unknown keys checked by the declaration),
then each section's ``__post_init__`` checks what a type cannot say. A refusal names the
key's path in the file, e.g. ``[relay].udp_prot: unknown key``. A key the server does not
read has no field here, so it cannot be set.

msgspec (not pydantic) because it is one small C extension with no dependencies, its
Structs are frozen, slotted and positional like the dataclasses they replace, and the same
declarations give the HTTP API its validation and its OpenAPI schema (loa/web/contract.py).
``loa speaker`` does not import this module: pole boards do not need msgspec."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import msgspec

from loa.errors import ConfigError

SIGNALS = ("voice", "music", "auto")
KINDS = ("managed", "rtp")
# "listener" endpoints are made by the node for in-process listeners, never by config files.
INTERNAL_KINDS = ("listener",)
# Broadcast classes by name (loa.relay.core.priority.Priority; config does not import the relay).
CLASSES = ("background", "scheduled", "priority", "live", "emergency")
DEFAULT_TZ = "Asia/Ho_Chi_Minh"
# A zone's TTS voice (espeak-ng's three Vietnamese ones): North, Central, South. A zone
# without one speaks in its parent's; the top of the tree in the North's.
ZONE_VOICES = ("vi", "vi-vn-x-central", "vi-vn-x-south")
DEFAULT_VOICE = "vi"
# A zone's packet duration (ms of audio in one RTP packet: 1, 2 or 3 Opus frames of 20 ms)
# and the bounds of its playout delay D (loa.relay.core.zones.ZoneAudio).
FRAME_DURATIONS_MS = (20, 40, 60)
ZONE_PLAYOUT_DELAY_MS = (40, 1000)
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")  # a DNS name or IPv4, lower case
_MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


def _networks(key: str, value: tuple[str, ...]) -> None:
    """Each item an address or CIDR (host bits allowed), checked by ``ipaddress``."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: {item!r} is not an IP address or CIDR") from None


def web_origin(text: str) -> str:
    """``text`` as a browser writes an ``Origin`` header: ``scheme://host[:port]``, lower
    case, without the scheme's default port. ValueError for anything that is not one (a
    path, a query, user info, a scheme other than http and https)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin") from None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    extra = parts.query or parts.fragment or parts.username or parts.password
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        try:
            host = f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            host = ""
    elif not _HOST.match(host):
        host = ""
    if default is None or not host or parts.path not in ("", "/") or extra:
        raise ValueError(f"{text!r} is not an origin")
    shown = "" if port in (None, default) else f":{port}"
    return f"{parts.scheme}://{host}{shown}"


def _origins(key: str, value: tuple[str, ...]) -> None:
    """Each item ``*`` (any origin) or an origin, ``scheme://host[:port]``."""
    for item in value:
        if item == "*":
            continue
        try:
            web_origin(item)
        except ValueError:
            raise ConfigError(
                f"{key}: {item!r} is not an origin; write scheme://host[:port] "
                "(https://studio.example.vn, no path), or '*' for any origin"
            ) from None


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A table of the config file: frozen, and an unknown key is an error."""


class OpusConfig(Section, frozen=True):
    bitrate_bps: int = 32_000
    complexity: int = 9
    fec: bool = True
    packet_loss_pct: int = 10
    dtx: bool = False
    signal: str = "voice"
    # The packet duration of a zone that sets none (and of its parents): Opus is encoded once
    # in 20 ms frames; a zone at 40 or 60 ms gets them 2 or 3 to a packet.
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if self.frame_ms not in FRAME_DURATIONS_MS:
            raise ConfigError(
                f"opus.frame_ms must be one of {', '.join(map(str, FRAME_DURATIONS_MS))}, "
                f"got {self.frame_ms}"
            )
        if not 6_000 <= self.bitrate_bps <= 510_000:
            raise ConfigError(f"opus.bitrate_bps must be 6000..510000, got {self.bitrate_bps}")
        if not 0 <= self.complexity <= 10:
            raise ConfigError(f"opus.complexity must be 0..10, got {self.complexity}")
        if not 0 <= self.packet_loss_pct <= 100:
            raise ConfigError(f"opus.packet_loss_pct must be 0..100, got {self.packet_loss_pct}")
        if self.signal not in SIGNALS:
            raise ConfigError(f"opus.signal must be one of {SIGNALS}, got {self.signal!r}")


class RelayConfig(Section, frozen=True):
    udp_host: str = "0.0.0.0"
    udp_port: int = 5004
    # What the server tells speakers to send their UDP hello to; defaults to the host they
    # reached the WebSocket on.
    public_host: str | None = None
    # The UDP port speakers are told to use, when it differs from udp_port (port forwarding).
    public_udp_port: Port | None = None
    keepalive_s: float = 10.0
    session_timeout_s: float = 35.0
    chime: bool = True
    # Seconds between plays of an emergency CAP alert until it expires or is cancelled, unless
    # the alert's repeatIntervalMinutes parameter says otherwise; 0 plays it once.
    cap_repeat_every_s: float = 600.0
    # Benchmarks only: every packet carries its frame-ready wall-clock time in an RTP header
    # extension (RFC 8285 one-byte form, id 1, 8 bytes, microseconds since the epoch).
    stamp_frames: bool = False
    # Fan-out by sendmmsg(2), one call a frame (loa.relay.sendmmsg); false, or a system
    # without it: one sendto a packet. Kept switchable so the bench can measure the gain.
    sendmmsg: bool = True
    # With sendmmsg: the endpoints of a stream on its steady path get their headers in blocks
    # (steady groups, loa.relay.core.steady) instead of one Python call each; false sends every
    # header the one-by-one way (the same bytes). Kept switchable so the bench can compare.
    steady_groups: bool = True
    # RTCP sender reports (NTP ↔ RTP time, RFC 3550) to every receiving endpoint this often:
    # speakers get them on their RTP port (rtcp-mux), plain RTP receivers on port + 1.
    rtcp_interval_s: float = 5.0
    # The playout delay D speakers are told in their welcome, for zones that set none (a
    # zone's ``playout_delay_ms``, 40..1000, wins): how deep their jitter buffer may grow
    # (jitter, and time to get a lost packet sent again).
    playout_delay_ms: int = 300
    # Networks (addresses or CIDRs) that URL sources may reach although they are loopback,
    # link-local, unspecified or multicast (refused by default; loa.streamer.targets).
    url_allow_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.udp_port <= 65535:
            raise ConfigError(f"relay.udp_port must be 0..65535, got {self.udp_port}")
        if self.keepalive_s <= 0 or self.session_timeout_s <= self.keepalive_s:
            raise ConfigError("relay.session_timeout_s must exceed relay.keepalive_s > 0")
        if not 40 <= self.playout_delay_ms <= 5000:
            raise ConfigError(
                f"relay.playout_delay_ms must be 40..5000, got {self.playout_delay_ms}"
            )
        if not 0.5 <= self.rtcp_interval_s <= 60:
            raise ConfigError(f"relay.rtcp_interval_s must be 0.5..60, got {self.rtcp_interval_s}")
        _networks("relay.url_allow_networks", self.url_allow_networks)
        if not 0 <= self.cap_repeat_every_s <= 86400:
            raise ConfigError(
                f"relay.cap_repeat_every_s must be 0..86400, got {self.cap_repeat_every_s}"
            )


class WebConfig(Section, frozen=True):
    host: str = "0.0.0.0"
    port: int = 8080
    max_upload_mb: int = 200
    # A connection must send a whole request head within this many seconds of connecting or
    # of its previous response (idle keep-alive connections close after it too).
    header_timeout_s: float = 10.0
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses/CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # If set, GET /metrics needs it (Bearer or ?token=); unset, /metrics is open.
    metrics_token: str | None = None
    # Uploaded media longer than this are refused (checked before the whole file is decoded).
    max_media_duration_s: float = 7200.0
    # Other origins whose pages may publish by WHIP or listen by WHEP (CORS), e.g.
    # "https://studio.example.vn"; "*" for any. Empty: same-origin pages only.
    cors_origins: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the metrics token stays out of logs
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__struct_fields__
            if name != "metrics_token"
        )
        return f"WebConfig({shown})"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"web.port must be 0..65535, got {self.port}")
        if not 1 <= self.max_upload_mb <= 10_000:
            raise ConfigError(f"web.max_upload_mb must be 1..10000, got {self.max_upload_mb}")
        if not 0.1 <= self.header_timeout_s <= 3600:
            raise ConfigError(
                f"web.header_timeout_s must be 0.1..3600, got {self.header_timeout_s}"
            )
        if not 1 <= self.max_media_duration_s <= 7 * 86400:
            raise ConfigError(
                f"web.max_media_duration_s must be 1..604800, got {self.max_media_duration_s}"
            )
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ConfigError("web.metrics_token must be a string of at least 16 characters")
        _networks("web.trusted_proxies", self.trusted_proxies)
        _origins("web.cors_origins", self.cors_origins)


def check_timezone(name: str, where: str) -> None:
    try:
        ZoneInfo(name)
    except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
        raise ConfigError(
            f"{where}: unknown time zone {name!r}; use an IANA name like {DEFAULT_TZ!r}"
        ) from None


class ZoneSpec(Section, frozen=True):
    id: str
    name: str
    parent: str | None = None
    timezone: str = DEFAULT_TZ
    voice: str | None = None  # one of ZONE_VOICES; None: the parent's
    # Packet settings (loa.relay.core.zones.ZoneAudio); None: the parent's, at the top
    # opus.frame_ms, no redundancy and relay.playout_delay_ms.
    frame_ms: int | None = None  # one of FRAME_DURATIONS_MS
    redundancy: bool | None = None  # RFC 2198 redundant audio
    playout_delay_ms: int | None = None  # ZONE_PLAYOUT_DELAY_MS

    def __post_init__(self) -> None:
        check_timezone(self.timezone, f"zone {self.id}")
        if self.voice is not None and self.voice not in ZONE_VOICES:
            raise ConfigError(
                f"zone {self.id}: voice must be one of {', '.join(ZONE_VOICES)}, got {self.voice!r}"
            )
        if self.frame_ms is not None and self.frame_ms not in FRAME_DURATIONS_MS:
            raise ConfigError(
                f"zone {self.id}: frame_ms must be one of "
                f"{', '.join(map(str, FRAME_DURATIONS_MS))}, got {self.frame_ms}"
            )
        low, high = ZONE_PLAYOUT_DELAY_MS
        if self.playout_delay_ms is not None and not low <= self.playout_delay_ms <= high:
            raise ConfigError(
                f"zone {self.id}: playout_delay_ms must be {low}..{high}, "
                f"got {self.playout_delay_ms}"
            )


class EndpointSpec(Section, frozen=True):
    id: str
    name: str
    zone: str
    token: str | None = None
    kind: str = "managed"
    address: str | None = None  # host:port, for kind "rtp"
    lat: float | None = None
    lon: float | None = None
    volume: int = 80
    emergency_volume: int = 100

    def __post_init__(self) -> None:
        if self.kind not in KINDS + INTERNAL_KINDS:
            raise ConfigError(f"endpoint {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "rtp" and not self.address:
            raise ConfigError(f"endpoint {self.id}: an rtp endpoint needs address = 'host:port'")
        for name in ("volume", "emergency_volume"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ConfigError(f"endpoint {self.id}: {name} must be 0..100, got {value}")


class MountSpec(Section, frozen=True):
    """An Icecast source mount: ``PUT``/``SOURCE /{name}`` with Basic auth ``user:password``
    starts a broadcast of class ``priority`` to ``zones`` (TOML key ``class``)."""

    name: str
    password: str
    zones: tuple[str, ...]
    priority: str = msgspec.field(default="live", name="class")
    origin_zone: str | None = None
    user: str = "source"
    # A source that sends nothing for this long is closed and its broadcast ends (Icecast's
    # own <source-timeout>); one that sends fewer bytes than this per second, averaged over
    # source_rate_window_s, too (a 1 byte/s trickle must not hold the mount).
    source_timeout_s: float = 10.0
    source_min_bytes_per_s: float = 500.0  # 4 kbit/s: below any real encoder's stream
    source_rate_window_s: float = 10.0

    def __repr__(self) -> str:  # the password stays out of logs
        return (
            f"MountSpec(name={self.name!r}, zones={self.zones!r}, class={self.priority!r}, "
            f"origin_zone={self.origin_zone!r}, user={self.user!r})"
        )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _MOUNT_NAME.match(self.name):
            raise ConfigError(
                f"mount {self.name!r}: name must be 1-64 letters, digits, '.', '_' or '-' "
                "(the URL path without its leading '/')"
            )
        if not isinstance(self.password, str) or not self.password:
            raise ConfigError(f"mount {self.name}: password must be a non-empty string")
        if not isinstance(self.user, str) or not self.user or ":" in self.user:
            raise ConfigError(f"mount {self.name}: user must be a non-empty string without ':'")
        if isinstance(self.zones, str) or not all(isinstance(z, str) for z in self.zones):
            raise ConfigError(f"mount {self.name}: zones must be a list of zone ids")
        if not self.zones:
            raise ConfigError(f"mount {self.name}: zones must name at least one zone")
        if self.priority not in CLASSES:
            raise ConfigError(
                f"mount {self.name}: class must be one of {CLASSES}, got {self.priority!r}"
            )
        for key in ("source_timeout_s", "source_rate_window_s"):
            if not 0 < getattr(self, key) <= 3600:
                raise ConfigError(f"mount {self.name}: {key} must be in (0, 3600] seconds")
        if not 0 <= self.source_min_bytes_per_s <= 1_000_000:
            raise ConfigError(f"mount {self.name}: source_min_bytes_per_s must be in [0, 1000000]")


def _redacted(url: str) -> str:
    """The URL without its password, for messages (loa.store.db.redact, which config cannot
    import)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@{parts.hostname or ''}"
        return parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")).geturl()
    except ValueError:
        return "(an unparseable URL)"


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


class StoreConfig(Section, frozen=True):
    """``[store]``: where the database is. Unset, a SQLite file in ``data_dir`` (one node);
    ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://user:pw@host/db``
    (the one a cluster's nodes share)."""

    url: str | None = None

    def __repr__(self) -> str:  # the password stays out of logs
        return f"StoreConfig(url={None if self.url is None else _redacted(self.url)!r})"

    def __post_init__(self) -> None:
        if self.url is not None and _scheme(self.url) not in ("sqlite", "postgresql", "postgres"):
            raise ConfigError(
                f"url must start with sqlite:/// or postgresql://, got {_redacted(self.url)!r}"
            )

    @property
    def shared(self) -> bool:
        """A PostgreSQL database (which several nodes can share), not a SQLite file."""
        return self.url is not None and _scheme(self.url) in ("postgresql", "postgres")


_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ClusterConfig(Section, frozen=True):
    """``[cluster]``: this node's place in a cluster (docs/DESIGN.md, "Cluster protocol").
    Its presence turns cluster mode on: Redis for the bus, PostgreSQL for the store."""

    redis_url: str
    node_id: str
    # Where speakers and browsers reach this node (the servers list speakers are given).
    public_url: str
    capacity: int = 1000  # speakers; the leader fills a node to two thirds of it
    name: str = "loa"  # the key prefix in Redis (loa:<name>:…): clusters sharing one Redis
    # Zone depth of the unit placed on one node: 1 for province → commune (never split).
    commune_depth: int = 1
    # Speakers this node welcomes per second at most (a burst of one second's worth); the
    # others are sent back to retry after a short random wait (a failed node's storm).
    admit_per_s: int = 500

    def __repr__(self) -> str:  # the Redis password stays out of logs
        return (
            f"ClusterConfig(redis_url={_redacted(self.redis_url)!r}, node_id={self.node_id!r}, "
            f"public_url={self.public_url!r}, capacity={self.capacity}, name={self.name!r})"
        )

    def __post_init__(self) -> None:
        if _scheme(self.redis_url) not in ("redis", "rediss", "unix"):
            raise ConfigError(
                "redis_url must be redis://host:port[/db], rediss://… or "
                f"unix:///path, got {_redacted(self.redis_url)!r}"
            )
        if not _NODE_ID.match(self.node_id):
            raise ConfigError(
                f"node_id must be 1-64 letters, digits, '.', '_' or '-', got {self.node_id!r}"
            )
        if not _NODE_ID.match(self.name):
            raise ConfigError(
                f"name must be 1-64 letters, digits, '.', '_' or '-', got {self.name!r}"
            )
        try:
            parts = urlsplit(self.public_url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "public_url must be the http(s) URL speakers reach this node at, "
                f"like 'http://10.0.0.11:8080', got {self.public_url!r}"
            )
        if parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ConfigError(f"public_url must have no path or query, got {self.public_url!r}")
        if not 1 <= self.capacity <= 1_000_000:
            raise ConfigError(f"capacity must be 1..1000000 speakers, got {self.capacity}")
        if not 1 <= self.admit_per_s <= 100_000:
            raise ConfigError(f"admit_per_s must be 1..100000, got {self.admit_per_s}")
        if not 0 <= self.commune_depth <= 10:
            raise ConfigError(f"commune_depth must be 0..10, got {self.commune_depth}")


class Config(Section, frozen=True):
    web: WebConfig = msgspec.field(default_factory=WebConfig)
    relay: RelayConfig = msgspec.field(default_factory=RelayConfig)
    opus: OpusConfig = msgspec.field(default_factory=OpusConfig)
    data_dir: Path = Path("data")
    admin_token: str | None = None
    zones: tuple[ZoneSpec, ...] = ()
    endpoints: tuple[EndpointSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    cluster: ClusterConfig | None = None

    def __post_init__(self) -> None:
        if self.cluster is not None and not self.store.shared:
            where = "a SQLite file in data_dir" if self.store.url is None else "a SQLite file"
            raise ConfigError(
                f"[cluster] needs a database the nodes share: set [store] url = "
                f"'postgresql://user:password@host:5432/loa' (the store is now {where}, "
                "which only one node can use)"
            )
        ids = [z.id for z in self.zones]
        if len(set(ids)) != len(ids):
            raise ConfigError("zone ids must be unique")
        known = set(ids)
        for z in self.zones:
            if z.parent is not None and z.parent not in known:
                raise ConfigError(f"zone {z.id}: parent {z.parent!r} is not a declared zone")
        eids = [e.id for e in self.endpoints]
        if len(set(eids)) != len(eids):
            raise ConfigError("endpoint ids must be unique")
        for e in self.endpoints:
            if e.zone not in known:
                raise ConfigError(f"endpoint {e.id}: zone {e.zone!r} is not a declared zone")
        self._check_mounts(known)

    def _check_mounts(self, zones: set[str]) -> None:
        names = [m.name for m in self.mounts]
        if len(set(names)) != len(names):
            raise ConfigError("mount names must be unique")
        for m in self.mounts:
            for z in m.zones:
                if z not in zones:
                    raise ConfigError(f"mount {m.name}: zone {z!r} is not a declared zone")
            if m.origin_zone is not None and m.origin_zone not in zones:
                raise ConfigError(
                    f"mount {m.name}: origin_zone {m.origin_zone!r} is not a declared zone"
                )


# -- loading ---------------------------------------------------------------------------------
_TABLES = frozenset({"web", "relay", "opus", "store", "cluster"})
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def key_path(path: str, key: str | None = None) -> str:
    """msgspec's ``$.relay.udp_port`` / ``$.endpoints[2]`` as the file spells it:
    ``[relay].udp_port`` / ``[[endpoints]] #3``."""
    steps: list[str | int] = [name if name else int(index) for name, index in _STEP.findall(path)]
    if key is not None:
        steps.append(key)
    if not steps:
        return "(top level)"
    out = ""
    first = steps[0]
    if len(steps) == 1:
        return f"[{first}]" if first in _TABLES else str(first)
    if isinstance(steps[1], int):
        out, rest = f"[[{first}]] #{steps[1] + 1}", steps[2:]
    else:
        out, rest = f"[{first}]", steps[1:]
    for step in rest:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


def explain(error: msgspec.ValidationError) -> str:
    """One refusal of the file, with the key's path first."""
    found = _AT.match(str(error))
    assert found is not None  # the pattern matches any text
    message, path = found["message"], found["path"] or ""
    if unknown := _UNKNOWN.match(message):
        return f"{key_path(path, unknown['key'])}: unknown key"
    if missing := _MISSING.match(message):
        return f"{key_path(path, missing['key'])}: missing (required)"
    message = message[:1].lower() + message[1:] if message.startswith("Expected") else message
    if not path and message.startswith("["):  # a whole-file check that names its own table
        return message.replace("`", "")
    return f"{key_path(path)}: {message.replace('`', '')}"


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise TypeError(f"Expected a path (string), got {type(value).__name__}")


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from parsed TOML (or any nested mapping)."""
    try:
        config = msgspec.convert(dict(data), Config, dec_hook=_decode_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(explain(exc)) from None
    for n, e in enumerate(config.endpoints, 1):
        where = f"[[endpoints]] #{n}"
        if e.kind not in KINDS:
            raise ConfigError(f"{where}: endpoint {e.id}: kind must be one of {KINDS}")
        if e.kind == "managed" and not e.token:
            raise ConfigError(f"{where}: endpoint {e.id}: a managed endpoint needs a token")
    return config


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """File, then LOA_* environment, then flags (``overrides``, dotted keys like 'web.port')."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    env = os.environ if env is None else env
    flat: dict[str, Any] = {}
    if env.get("LOA_ADMIN_TOKEN"):
        flat["admin_token"] = env["LOA_ADMIN_TOKEN"]
    if env.get("LOA_DATA"):
        flat["data_dir"] = env["LOA_DATA"]
    flat.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        target = data.setdefault(section, {}) if section else data
        target[name] = value
    return from_mapping(data)


def with_changes(section: Any, **changes: Any) -> Any:
    """A copy of a config section (or the whole Config) with some values changed, checked
    again by its ``__post_init__``."""
    return msgspec.structs.replace(section, **changes)
