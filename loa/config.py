"""One tree of frozen, validated settings, loaded once (file < environment < flags)."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from loa.errors import ConfigError

SIGNALS = ("voice", "music", "auto")
KINDS = ("managed", "rtp")
# "listener" endpoints are made by the node for in-process listeners, never by config files.
INTERNAL_KINDS = ("listener",)
# Broadcast classes by name (loa.relay.core.priority.Priority; config does not import the relay).
CLASSES = ("background", "scheduled", "priority", "live", "emergency")
_MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# -- edges (issue 10 item 5) --
def _networks(key: str, value: object) -> tuple[str, ...]:
    """A list of addresses or CIDRs, each checked by ``ipaddress`` (host bits allowed)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{key} must be a list of addresses or CIDRs, got {value!r}")
    for item in value:
        try:
            if not isinstance(item, str):
                raise TypeError(item)
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: {item!r} is not an IP address or CIDR") from None
    return tuple(value)


@dataclass(frozen=True)
class OpusConfig:
    bitrate_bps: int = 32_000
    complexity: int = 9
    fec: bool = True
    packet_loss_pct: int = 10
    dtx: bool = False
    signal: str = "voice"

    def __post_init__(self) -> None:
        if not 6_000 <= self.bitrate_bps <= 510_000:
            raise ConfigError(f"opus.bitrate_bps must be 6000..510000, got {self.bitrate_bps}")
        if not 0 <= self.complexity <= 10:
            raise ConfigError(f"opus.complexity must be 0..10, got {self.complexity}")
        if not 0 <= self.packet_loss_pct <= 100:
            raise ConfigError(f"opus.packet_loss_pct must be 0..100, got {self.packet_loss_pct}")
        if self.signal not in SIGNALS:
            raise ConfigError(f"opus.signal must be one of {SIGNALS}, got {self.signal!r}")


@dataclass(frozen=True)
class RelayConfig:
    udp_host: str = "0.0.0.0"
    udp_port: int = 5004
    # What the server tells speakers to send their UDP hello to; defaults to the host they
    # reached the WebSocket on.
    public_host: str | None = None
    # The UDP port speakers are told to use, when it differs from udp_port (port forwarding).
    public_udp_port: int | None = None
    keepalive_s: float = 10.0
    session_timeout_s: float = 35.0
    ws_fallback_after_s: float = 3.0
    queue_frames: int = 8
    chime: bool = True
    # Benchmarks only: every packet carries its frame-ready wall-clock time in an RTP header
    # extension (RFC 8285 one-byte form, id 1, 8 bytes, microseconds since the epoch).
    stamp_frames: bool = False
    # -- edges (issue 10 item 5) --------------------------------------------------------------
    # Networks (addresses or CIDRs) that URL sources may reach although they are loopback,
    # link-local, unspecified or multicast (refused by default; loa.streamer.targets).
    url_allow_networks: tuple[str, ...] = ()
    # -- end edges ----------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if not 0 <= self.udp_port <= 65535:
            raise ConfigError(f"relay.udp_port must be 0..65535, got {self.udp_port}")
        if self.keepalive_s <= 0 or self.session_timeout_s <= self.keepalive_s:
            raise ConfigError("relay.session_timeout_s must exceed relay.keepalive_s > 0")
        if not 1 <= self.queue_frames <= 500:
            raise ConfigError(f"relay.queue_frames must be 1..500, got {self.queue_frames}")
        object.__setattr__(
            self,
            "url_allow_networks",
            _networks("relay.url_allow_networks", self.url_allow_networks),
        )


@dataclass(frozen=True)
class WebConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    max_upload_mb: int = 200
    # -- edges (issue 10 item 5) --------------------------------------------------------------
    # A connection must send a whole request head within this many seconds of connecting or
    # of its previous response (idle keep-alive connections close after it too).
    header_timeout_s: float = 10.0
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses/CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # If set, GET /metrics needs it (Bearer or ?token=); unset, /metrics is open.
    metrics_token: str | None = field(default=None, repr=False)
    # Uploaded media longer than this are refused (checked before the whole file is decoded).
    max_media_duration_s: float = 7200.0
    # -- end edges ----------------------------------------------------------------------------

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"web.port must be 0..65535, got {self.port}")
        if not 1 <= self.max_upload_mb <= 10_000:
            raise ConfigError(f"web.max_upload_mb must be 1..10000, got {self.max_upload_mb}")
        self._check_edges()

    def _check_edges(self) -> None:
        for key in ("header_timeout_s", "max_media_duration_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"web.{key} must be a number of seconds, got {value!r}")
        if not 0.1 <= self.header_timeout_s <= 3600:
            raise ConfigError(
                f"web.header_timeout_s must be 0.1..3600, got {self.header_timeout_s}"
            )
        if not 1 <= self.max_media_duration_s <= 7 * 86400:
            raise ConfigError(
                f"web.max_media_duration_s must be 1..604800, got {self.max_media_duration_s}"
            )
        token = self.metrics_token
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigError("web.metrics_token must be a string of at least 16 characters")
        object.__setattr__(
            self, "trusted_proxies", _networks("web.trusted_proxies", self.trusted_proxies)
        )


@dataclass(frozen=True)
class ZoneSpec:
    id: str
    name: str
    parent: str | None = None
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class EndpointSpec:
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


@dataclass(frozen=True)
class MountSpec:
    """An Icecast source mount: ``PUT``/``SOURCE /{name}`` with Basic auth ``user:password``
    starts a broadcast of class ``priority`` to ``zones`` (TOML key ``class``)."""

    name: str
    password: str = field(repr=False)
    zones: tuple[str, ...]
    priority: str = "live"
    origin_zone: str | None = None
    user: str = "source"

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


@dataclass(frozen=True)
class Config:
    web: WebConfig = field(default_factory=WebConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    opus: OpusConfig = field(default_factory=OpusConfig)
    data_dir: Path = Path("data")
    admin_token: str | None = None
    zones: tuple[ZoneSpec, ...] = ()
    endpoints: tuple[EndpointSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()

    def __post_init__(self) -> None:
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


def _section(cls: type, data: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _endpoint(data: Mapping[str, Any]) -> EndpointSpec:
    spec: EndpointSpec = _section(EndpointSpec, data, "[[endpoints]]")
    if spec.kind not in KINDS:
        raise ConfigError(f"endpoint {spec.id}: kind must be one of {KINDS}, got {spec.kind!r}")
    if spec.kind == "managed" and not spec.token:
        raise ConfigError(f"endpoint {spec.id}: a managed endpoint needs a token")
    return spec


def _mount(data: Mapping[str, Any]) -> MountSpec:
    data = dict(data)
    if "priority" in data:
        raise ConfigError("[[mounts]]: unknown setting(s) ['priority']; the class is `class`")
    if "class" in data:
        data["priority"] = data.pop("class")
    zones = data.get("zones")
    if isinstance(zones, list):
        data["zones"] = tuple(zones)
    elif zones is not None:
        raise ConfigError(f"[[mounts]]: zones must be a list of zone ids, got {zones!r}")
    spec: MountSpec = _section(MountSpec, data, "[[mounts]]")
    return spec


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from parsed TOML (or any nested mapping)."""
    data = dict(data)
    known = {"web", "relay", "opus", "data_dir", "admin_token", "zones", "endpoints", "mounts"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown top-level setting(s) {sorted(unknown)}")
    return Config(
        web=_section(WebConfig, data.get("web", {}), "[web]"),
        relay=_section(RelayConfig, data.get("relay", {}), "[relay]"),
        opus=_section(OpusConfig, data.get("opus", {}), "[opus]"),
        data_dir=Path(data.get("data_dir", "data")),
        admin_token=data.get("admin_token"),
        zones=tuple(_section(ZoneSpec, z, "[[zones]]") for z in data.get("zones", [])),
        endpoints=tuple(_endpoint(e) for e in data.get("endpoints", [])),
        mounts=tuple(_mount(m) for m in data.get("mounts", [])),
    )


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


def with_changes(config: Config, **changes: Any) -> Config:
    return replace(config, **changes)
