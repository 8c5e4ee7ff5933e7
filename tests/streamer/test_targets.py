"""URL sources refuse loopback, link-local, unspecified, multicast and reserved targets unless
relay.url_allow_networks allows them: the rules, the checks before a broadcast or schedule is
accepted (a 422 from a real server), and the reader that never connects to a refused
address (a name resolving to 127.0.0.1, a redirect to it)."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loa.config import Config, with_changes
from loa.streamer.factory import build_source
from loa.streamer.targets import (
    TargetPolicy,
    TargetRefused,
    check_description,
    refusal,
    source_urls,
)
from loa.streamer.url import UrlSource
from loa.web.errors import http_status
from tests.conftest import tree_config
from tests.streamer.test_url import (
    LOCAL,
    TONE_HZ,
    TONE_S,
    Upstream,
    make_app,
    read_paced,
    relay_threads,
    tone_frames,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("10.1.2.3", None),  # an intranet studio is what many deployments relay
        ("192.168.1.10", None),
        ("100.64.0.1", None),
        ("203.0.113.8", None),
        ("2001:db8::8", None),
    ],
)
def test_refusal(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


def test_literal_refused_with_a_message_naming_the_reason() -> None:
    with pytest.raises(TargetRefused) as info:
        UrlSource("http://169.254.169.254/latest/meta-data")
    assert info.value.message == (
        "relay URL host 169.254.169.254 is a link-local address; URL sources may not reach "
        "loopback, link-local, unspecified, multicast or reserved addresses unless "
        "relay.url_allow_networks allows them"
    )
    assert info.value.fields == {
        "host": "169.254.169.254",
        "address": "169.254.169.254",
        "reason": "link-local",
    }
    assert (http_status(info.value), info.value.code) == (422, "url_target_refused")
    with pytest.raises(TargetRefused, match="is a loopback address"):
        UrlSource("https://[::1]:8443/live")
    with pytest.raises(TargetRefused, match="is a loopback address"):
        UrlSource("rtsp://127.0.0.1:9/radio")
    UrlSource("http://127.0.0.1:9/live", targets=LOCAL)  # allowed by the config
    UrlSource("http://radio.example/live")  # a name: resolved later, not here


def test_allow_networks_are_exact() -> None:
    policy = TargetPolicy(["127.0.0.1/32", "fe80::/64"])
    policy.check_address("h", "127.0.0.1")
    policy.check_address("h", "::ffff:127.0.0.1")
    policy.check_address("h", "fe80::2")
    with pytest.raises(
        TargetRefused, match=r"^relay URL host h resolves to 127\.0\.0\.2, which is"
    ):
        policy.check_address("h", "127.0.0.2")


def test_every_url_in_a_description_is_found() -> None:
    desc = {
        "type": "playlist",
        "items": [
            {"type": "tone"},
            {"type": "url", "url": "http://a/", "fallback": {"type": "url", "url": "http://b/"}},
            {"type": "playlist", "items": [{"type": "url", "url": "http://c/"}]},
        ],
    }
    assert sorted(source_urls(desc)) == ["http://a/", "http://b/", "http://c/"]
    deep: Any = {"type": "url", "url": "http://d/"}
    for _ in range(5000):  # no recursion: deep nesting is walked, not a RecursionError
        deep = {"type": "playlist", "items": [deep]}
    assert list(source_urls(deep)) == ["http://d/"]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/live",  # a name that resolves to loopback
        "http://2130706433/live",  # 127.0.0.1 as one number
        "http://127.1/live",  # and abbreviated
        "rtsp://localhost/radio",
    ],
)
async def test_names_are_resolved_and_every_address_checked(url: str) -> None:
    with pytest.raises(TargetRefused) as info:
        await check_description({"type": "url", "url": url}, TargetPolicy())
    assert info.value.fields["reason"] == "loopback"
    assert " resolves to " in info.value.message
    await check_description({"type": "url", "url": url}, TargetPolicy(["127.0.0.0/8", "::1"]))


async def test_one_bad_address_among_good_ones_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    with pytest.raises(TargetRefused, match=r"radio\.example resolves to 127\.0\.0\.1"):
        await TargetPolicy().check_url("http://radio.example/live")


async def test_unresolvable_and_malformed_urls_are_left_to_the_others() -> None:
    # No DNS answer now: the reader checks again before it connects.
    await TargetPolicy().check_url("http://no-such-host.invalid/live")
    for url in ("http://[::1", "notaurl", "ftp://127.0.0.1/", "http://h:99999/"):
        await TargetPolicy().check_url(url)


@pytest.fixture(scope="module")
def mp3_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("the ffmpeg binary is not installed; the README's test command installs it")
    out = tmp_path_factory.mktemp("targets-media")
    (out / "hls").mkdir()  # make_app serves it
    subprocess.run(
        [
            *(ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"),
            *("-i", f"sine=frequency={TONE_HZ}:duration={TONE_S}", "-b:a", "64k"),
            str(out / "tone.mp3"),
        ],
        check=True,
        timeout=30,
    )
    return out


@pytest.fixture
async def upstream(mp3_media: Path) -> AsyncIterator[tuple[Upstream, str]]:
    """The test_url upstream on 127.0.0.1: it counts every request it gets."""
    up = Upstream(mp3_media)
    server = TestServer(make_app(up), host="127.0.0.1", port=0)
    await server.start_server()
    yield up, f"http://127.0.0.1:{server.port}"
    up.release.set()
    await server.close()


@pytest.fixture
async def sources() -> AsyncIterator[list[UrlSource]]:
    made: list[UrlSource] = []
    yield made
    for src in made:
        await src.aclose()
    assert relay_threads() == []


# -- the reader never connects to a refused address ------------------------------------------


async def test_a_name_that_resolves_to_loopback_is_never_connected_to(
    upstream: tuple[Upstream, str], sources: list[UrlSource]
) -> None:
    up, base = upstream
    port = base.rpartition(":")[2]
    src = UrlSource(f"http://localhost:{port}/tone.mp3", reconnect_min_s=0.05, reconnect_max_s=0.1)
    sources.append(src)
    frames, _ = await read_paced(src, lambda _: src.reconnects >= 1, max_frames=100)
    assert all(f.silent_fill for f in frames)
    assert "relay URL host localhost resolves to " in src.last_error
    assert "loopback" in src.last_error
    assert up.requests == {}


@pytest.fixture
async def redirector(upstream: tuple[Upstream, str]) -> AsyncIterator[str]:
    """A server on 127.0.0.2 that redirects to the upstream on 127.0.0.1."""
    _, base = upstream

    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{base}/tone.mp3")

    app = web.Application()
    app.router.add_get("/moved", moved)
    server = TestServer(app, host="127.0.0.2", port=0)
    await server.start_server()
    yield f"http://127.0.0.2:{server.port}/moved"
    await server.close()


async def test_a_redirect_to_a_refused_address_is_not_followed(
    upstream: tuple[Upstream, str], redirector: str, sources: list[UrlSource]
) -> None:
    up, _ = upstream
    only_the_redirector = TargetPolicy(["127.0.0.2/32"])
    src = UrlSource(
        redirector, reconnect_min_s=0.05, reconnect_max_s=0.1, targets=only_the_redirector
    )
    sources.append(src)
    await read_paced(src, lambda _: src.reconnects >= 1, max_frames=100)
    assert "relay URL host 127.0.0.1 is a loopback address" in src.last_error
    assert up.requests == {}
    # The same redirect with the upstream allowed plays: the refusal above was the check.
    src = UrlSource(redirector, targets=LOCAL)
    sources.append(src)
    frames, _ = await read_paced(src, tone_frames(10), max_frames=200)
    assert sum(not f.silent_fill for f in frames) >= 10
    assert up.requests == {"/tone.mp3": 1}


def test_the_factory_hands_the_policy_to_every_url_source() -> None:
    desc = {
        "type": "playlist",
        "items": [
            {"type": "tone", "duration_s": 1},
            {"type": "url", "url": "http://127.0.0.1:9/a", "fallback": {"type": "tone"}},
        ],
    }
    with pytest.raises(TargetRefused):
        build_source(desc, media_path=Path)
    source, _ = build_source(desc, media_path=Path, url_targets=LOCAL)
    assert source is not None


# -- a real server: 422 before anything starts -----------------------------------------------


def url_body(url: str) -> dict[str, Any]:
    return {"source": {"type": "url", "url": url}, "targets": {"zones": ["p"]}, "class": "live"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/api/v1/zones", "loopback"),
        ("http://localhost:6379/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::]:80/", "unspecified"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
async def test_the_api_refuses_by_default_with_a_422(
    relay_factory: Any, config: Config, url: str, reason: str
) -> None:
    relay = await relay_factory(config)
    body = url_body(url)
    body["source"]["fallback"] = {"type": "tone"}
    error = (await relay.api("POST", "/broadcasts", body, status=422))["error"]
    assert error["code"] == "url_target_refused" and error["reason"] == reason
    assert f"is a {reason} address" in error["message"]
    assert relay.node.broadcasts == {}
    schedule = {
        "name": "Tiếp sóng",
        "targets": {"zones": ["p"]},
        "rrule": "FREQ=DAILY",
        "dtstart": "2030-01-01T05:00",
        "items": [{"type": "url", "url": url, "duration_s": 600}],
    }
    error = (await relay.api("POST", "/schedules", schedule, status=422))["error"]
    assert error["code"] == "url_target_refused" and error["reason"] == reason
    assert (await relay.api("GET", "/schedules"))["schedules"] == []


async def test_the_api_plays_a_local_upstream_when_the_config_allows_it(
    relay_factory: Any, tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    up, base = upstream
    config = tree_config(tmp_path)
    config = with_changes(
        config, relay=with_changes(config.relay, url_allow_networks=("127.0.0.0/8",))
    )
    relay = await relay_factory(config)
    bc = await relay.api("POST", "/broadcasts", url_body(f"{base}/tone.mp3"), status=201)
    for _ in range(100):
        if up.requests:
            break
        await asyncio.sleep(0.05)
    assert up.requests == {"/tone.mp3": 1}
    await relay.api("DELETE", f"/broadcasts/{bc['id']}")
