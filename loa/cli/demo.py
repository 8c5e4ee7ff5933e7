"""`loa demo`: a relay with demo zones, simulated speakers on the real protocol and a looping
programme — what the README's main command starts."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from loa.cli.serve import serve_until_stopped
from loa.config import Config, EndpointSpec, RelayConfig, WebConfig, ZoneSpec
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.speaker.client import Speaker, SpeakerState
from loa.speaker.output import NullOutput
from loa.streamer.playlist import Playlist
from loa.streamer.tone import SilenceSource, ToneSource
from loa.streamer.tts import TtsSource
from loa.web import auth
from loa.web.app import create_app
from loa.web.keys import NODE, SIGN_IN, STORE

log = logging.getLogger(__name__)

# Thái Nguyên province; communes and villages with coordinates near the real places.
COMMUNES = (
    ("phu-luong", "Xã Phú Lương", 21.76, 105.73, ("Thôn Đồng Tâm", "Thôn Bãi Bông", "Thôn Na Mao")),
    ("dai-tu", "Xã Đại Từ", 21.63, 105.64, ("Thôn Hùng Sơn", "Thôn Tân Thái", "Thôn Bản Ngoại")),
    ("vo-nhai", "Xã Võ Nhai", 21.75, 106.05, ("Thôn La Hiên", "Thôn Đình Cả", "Thôn Tràng Xá")),
)
PROGRAMME = (
    "Đài truyền thanh xã xin kính chào bà con. Sau đây là bản tin thời sự buổi sáng. "
    "Ủy ban nhân dân xã thông báo: ngày mai, từ bảy giờ sáng, trạm y tế tiêm vắc xin cho trẻ "
    "em dưới năm tuổi. Đề nghị các gia đình đưa con em đến đúng giờ."
)


def demo_secret(data_dir: Path) -> bytes:
    """A per-data-directory secret, so the demo's device tokens are the same on every run
    (the database keeps their hashes from the first run)."""
    path = data_dir / "demo-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def device_token(secret: bytes, endpoint_id: str) -> str:
    digest = hmac.new(secret, endpoint_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def demo_config(args: argparse.Namespace, per_village: int) -> tuple[Config, dict[str, str]]:
    secret = demo_secret(args.data)
    zones = [ZoneSpec("thai-nguyen", "Tỉnh Thái Nguyên")]
    endpoints: list[EndpointSpec] = []
    tokens: dict[str, str] = {}
    for c_id, c_name, lat, lon, villages in COMMUNES:
        zones.append(ZoneSpec(c_id, c_name, parent="thai-nguyen"))
        for v, v_name in enumerate(villages):
            v_id = f"{c_id}-{v + 1}"
            zones.append(ZoneSpec(v_id, v_name, parent=c_id))
            for k in range(per_village):
                ep_id = f"{v_id}-loa{k + 1}"
                tokens[ep_id] = device_token(secret, ep_id)
                endpoints.append(
                    EndpointSpec(
                        ep_id,
                        f"Cụm loa {v_name} {k + 1}",
                        v_id,
                        token=tokens[ep_id],
                        lat=round(lat + 0.02 * v - 0.01 * k, 4),
                        lon=round(lon + 0.015 * k - 0.02 * v, 4),
                    )
                )
    admin = args.admin_token or os.environ.get("LOA_ADMIN_TOKEN") or secrets.token_urlsafe(18)
    config = Config(
        web=WebConfig(host=args.host, port=args.port),
        relay=RelayConfig(udp_host=args.host, udp_port=args.udp_port),
        data_dir=args.data,
        admin_token=admin,
        zones=tuple(zones),
        endpoints=tuple(endpoints),
    )
    return config, tokens


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="a demo relay with simulated speakers", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--udp-port", type=int, default=5004, help="UDP port (default 5004)")
    p.add_argument(
        "--data", type=Path, default=Path("data"), help="data directory (default ./data)"
    )
    p.add_argument("--admin-token", help="admin API token (default: $LOA_ADMIN_TOKEN or random)")
    p.add_argument(
        "--speakers-per-village",
        type=int,
        default=3,
        choices=range(21),
        metavar="0..20",
        help="simulated speakers per village (default 3: 27 in all)",
    )
    p.add_argument("--no-programme", action="store_true", help="do not loop the demo programme")
    p.set_defaults(func=run)


async def programme_loop(app: web.Application) -> None:
    """The demo's daily programme, played again a few seconds after it ends."""
    node = app[NODE]
    n = 0
    while True:
        n += 1
        source = Playlist(
            [
                TtsSource(PROGRAMME, voice="vi"),
                SilenceSource(duration_s=1.0),
                ToneSource(660, level_dbfs=-18, duration_s=1.5),
            ],
            name="Chương trình phát thử",
        )
        spec = BroadcastSpec(
            id=f"demo-{n}",
            priority=Priority.SCHEDULED,
            target_zones=frozenset({"thai-nguyen"}),
            resumable=True,
        )
        bc = await node.start_broadcast(
            spec,
            source,
            what="Chương trình phát thử (demo)",
            source_kind="tts",
            created_by="demo",
        )
        await bc.ended.wait()
        await asyncio.sleep(5.0)


async def demo_account(app: web.Application, password: str) -> None:
    """The demo's sign-in: user ``demo`` (admin), a fresh password on every run."""
    store = app[STORE]
    if await store.users.find("demo") is None:
        await auth.add_user(store, "demo", password, "admin", actor="demo")
    else:
        await auth.set_password(store, "demo", password, actor="demo")


def sign_in_box(url: str, username: str, password: str) -> str:
    """The sign-in details in a box, so they stand out from the log above them."""
    lines = [
        "Đăng nhập / sign in:",
        f"  {url}/login",
        f"  tên đăng nhập / user:  {username}",
        f"  mật khẩu / password:   {password}",
        "Dừng / stop: Ctrl+C",
    ]
    width = max(len(line) for line in lines) + 2
    rows = [f"│ {line.ljust(width - 2)} │" for line in lines]
    return "\n".join(["┌" + "─" * width + "┐", *rows, "└" + "─" * width + "┘"])


class DemoLogs(logging.Filter):
    """The simulated speakers' chatter (connected, playing …) is DEBUG in the demo: at the
    default level the log shows the relay, not 27 copies of each speaker event."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("loa.speaker") and record.levelno <= logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


async def _wait_listening(url: str) -> None:
    """Until the server answers /healthz (cleanup contexts run before the site listens)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def _run_when_listening(speaker: Speaker, url: str) -> None:
    """Start a speaker once the server accepts connections, so the demo's log does not open
    with 27 refused connections."""
    await _wait_listening(url)
    await speaker.run()


async def _announce(url: str, password: str, speakers: list[Speaker]) -> None:
    """Print the sign-in box last: once the server listens and the speakers have connected
    (at most 5 s), so the start-up log does not scroll it away."""
    await _wait_listening(url)
    for _ in range(100):
        if all(s.state in (SpeakerState.UDP, SpeakerState.WS) for s in speakers):
            break
        await asyncio.sleep(0.05)
    print(sign_in_box(url, "demo", password), flush=True)


def demo_ctx(tokens: dict[str, str], url: str, password: str, programme: bool):  # type: ignore[no-untyped-def]
    speakers = [
        Speaker(url, token, NullOutput(), backoff_min_s=0.5, backoff_max_s=5.0)
        for token in tokens.values()
    ]

    async def stop_speakers(app: web.Application) -> None:
        # on_shutdown runs before aiohttp waits for open connections to end: the simulated
        # speakers hang up first, so their WebSockets do not hold the shutdown up.
        for s in speakers:
            s.stop()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await demo_account(app, password)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_run_when_listening(s, url)) for s in speakers]
            tasks.append(tg.create_task(_announce(url, password, speakers)))
            if programme:
                tasks.append(tg.create_task(programme_loop(app)))
            yield
            for s in speakers:
                s.stop()
            for task in tasks:
                task.cancel()

    return ctx, stop_speakers


def run(args: argparse.Namespace) -> int:
    config, tokens = demo_config(args, args.speakers_per_village)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    password = secrets.token_urlsafe(9)
    app = create_app(config)
    app[SIGN_IN] = ("demo", password)  # the login page shows it to a browser on this machine
    ctx, stop_speakers = demo_ctx(tokens, url, password, not args.no_programme)
    app.cleanup_ctx.append(ctx)
    app.on_shutdown.append(stop_speakers)
    for handler in logging.getLogger().handlers:
        handler.addFilter(DemoLogs())
    print(
        f"loa demo: {len(config.zones)} zones, {len(tokens)} simulated speakers\n"
        f"  web and API:  {url}   (health: {url}/healthz, metrics: {url}/metrics)\n"
        f"  admin token:  {config.admin_token}\n"
        f"  try:          LOA_SERVER={url} LOA_ADMIN_TOKEN={config.admin_token} \\\n"
        f"                .venv/bin/loa broadcast start --class emergency --zone dai-tu \\\n"
        f"                --tts 'Bão sắp đổ bộ, bà con sơ tán đến nhà văn hóa thôn.'\n"
        f"  stop with Ctrl+C (the sign-in details follow once the server listens)",
        flush=True,
    )
    serve_until_stopped(app, config)
