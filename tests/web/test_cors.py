"""Cross-origin WHIP and WHEP: ``web.cors_origins``, real preflights over HTTP to a real
server, and a page on another origin publishing its (fake) microphone and camera by WHIP in
headless Chromium, heard by real speakers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from loa.codecs.sdp import Sdp
from loa.config import load, web_origin, with_changes
from loa.errors import ConfigError
from loa.web.cors import Cors
from tests.conftest import ADMIN, AUTH, Relay, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport
from tests.web import test_whip as whip_tests
from tests.web.test_browser import in_thread, until
from tests.web.test_studio_browser import TONE_HZ, tone_wav
from tests.web.test_whip import offer_sdp

loopback = whip_tests.loopback
webrtc_relay = whip_tests.webrtc_relay

STUDIO = "http://studio.example.vn:8000"


# -- the setting ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "origin"),
    [
        ("https://Studio.Example.VN", "https://studio.example.vn"),
        ("https://studio.example.vn:443/", "https://studio.example.vn"),
        ("http://192.168.1.20:8000", "http://192.168.1.20:8000"),
        ("http://[fd00::2]:80", "http://[fd00::2]"),
    ],
)
def test_origins_are_written_as_browsers_send_them(written: str, origin: str) -> None:
    assert web_origin(written) == origin


@pytest.mark.parametrize(
    "bad",
    [
        "studio.example.vn",
        "ftp://studio.example.vn",
        "https://studio.example.vn/whip",
        "https://user@studio.example.vn",
        "https://studio.example.vn?x=1",
        "https://studio.example.vn:99999",
        "null",
        "",
        "https://studio example.vn",
        "http://[fd00::zz]",
    ],
)
def test_a_setting_that_is_not_an_origin_stops_the_server(tmp_path: Path, bad: str) -> None:
    web_config = tree_config(tmp_path).web
    with pytest.raises(ConfigError, match=r"^web\.cors_origins: .* is not an origin; write"):
        with_changes(web_config, cors_origins=("https://ok.example.vn", bad))


def test_the_setting_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "loa.toml"
    path.write_text("[web]\ncors_origins = ['https://studio.example.vn', '*']\n")
    assert load(path, env={}).web.cors_origins == ("https://studio.example.vn", "*")
    assert load(None, env={}).web.cors_origins == ()  # same-origin only
    path.write_text("[web]\ncors_origins = 'https://studio.example.vn'\n")
    with pytest.raises(ConfigError, match=r"\[web\]\.cors_origins: expected array, got str"):
        load(path, env={})
    path.write_text("[web]\ncors_origins = ['https://studio.example.vn/page']\n")
    with pytest.raises(ConfigError, match=r"'https://studio\.example\.vn/page' is not an origin"):
        load(path, env={})
    example = Path(__file__).resolve().parents[2] / "examples" / "loa.toml"
    assert "# cors_origins = [" in example.read_text(encoding="utf-8")


def test_who_may_use_webrtc_from_another_origin() -> None:
    own = "http://127.0.0.1:8080"
    listed = Cors.of([STUDIO])
    assert listed.allows(STUDIO, own)
    assert listed.allows("HTTP://STUDIO.EXAMPLE.VN:8000", own)
    assert listed.allows(own, own)  # same origin needs no listing
    assert not listed.allows("http://studio.example.vn", own)  # another port
    assert not listed.allows("https://evil.example", own)
    assert not listed.allows("null", own)
    assert not Cors.of([]).allows(STUDIO, own)
    assert not Cors.of([]).allows(STUDIO, "http://bad host")  # a Host that names no host
    assert Cors.of(["*"]).allows("https://anyone.example", own)


# -- preflights over HTTP -------------------------------------------------------------------
async def cors_relay(webrtc_relay: Any, tmp_path: Path, *origins: str) -> Relay:
    config = tree_config(tmp_path)
    config = with_changes(config, web=with_changes(config.web, cors_origins=origins))
    relay: Relay = await webrtc_relay(config)
    return relay


async def preflight(
    relay: Relay, path: str, origin: str | None, method: str | None = "POST"
) -> tuple[int, Any, str]:
    headers = {}
    if origin is not None:
        headers["Origin"] = origin
    if method is not None:
        headers["Access-Control-Request-Method"] = method
        headers["Access-Control-Request-Headers"] = "authorization,content-type"
    async with relay.http.options(f"{relay.url}/api/v1{path}", headers=headers) as resp:
        return resp.status, resp.headers, await resp.text()


@pytest.mark.e2e
async def test_a_preflight_from_a_listed_origin_is_answered(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await cors_relay(webrtc_relay, tmp_path, STUDIO)
    for path, methods in (
        ("/whip?zones=c0&class=live", "POST, OPTIONS"),
        ("/whep?zone=c0", "POST, OPTIONS"),
        ("/whip/0123456789abcdef", "DELETE, PATCH, OPTIONS"),
        ("/whep/0123456789abcdef", "DELETE, PATCH, OPTIONS"),
    ):
        status, headers, text = await preflight(relay, path, STUDIO)
        assert (status, text) == (204, ""), path
        assert headers["Access-Control-Allow-Origin"] == STUDIO
        assert headers["Access-Control-Allow-Methods"] == methods
        assert headers["Allow"] == methods
        allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in headers.getall("Vary")
        assert "Access-Control-Allow-Credentials" not in headers


@pytest.mark.e2e
async def test_a_preflight_from_another_origin_is_refused(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await cors_relay(webrtc_relay, tmp_path, STUDIO)
    status, headers, text = await preflight(relay, "/whip", "https://evil.example")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert "Origin" in headers.getall("Vary")  # a cache must not serve it to another origin
    assert '"code": "origin_refused"' in text and '"origin": "https://evil.example"' in text
    assert "web.cors_origins does not list that origin" in text

    default = await webrtc_relay(tree_config(tmp_path / "default"))  # none listed
    status, headers, _ = await preflight(default, "/whep", STUDIO)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = await preflight(default, "/whep", default.url)  # its own origin
    assert status == 204 and headers["Access-Control-Allow-Origin"] == default.url


@pytest.mark.e2e
async def test_plain_options_says_what_the_resource_allows(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await cors_relay(webrtc_relay, tmp_path)
    status, headers, _ = await preflight(relay, "/whip", None, None)
    assert status == 204 and headers["Allow"] == "POST, OPTIONS"
    assert headers["Accept-Post"] == "application/sdp"
    assert "Access-Control-Allow-Origin" not in headers
    status, headers, _ = await preflight(relay, "/whep/feedfacefeedface", None, None)
    assert status == 204 and headers["Allow"] == "DELETE, PATCH, OPTIONS"
    assert "Accept-Post" not in headers
    # Only WHIP and WHEP take part: OPTIONS elsewhere in the API still needs a user.
    status, headers, _ = await preflight(relay, "/zones", STUDIO, "GET")
    assert status == 401 and "Access-Control-Allow-Origin" not in headers


@pytest.mark.e2e
async def test_answers_to_a_listed_origin_name_it_and_expose_location(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await cors_relay(webrtc_relay, tmp_path, "*")
    offer = await offer_sdp()
    headers = {**AUTH, "Content-Type": "application/sdp", "Origin": STUDIO}
    url = f"{relay.url}/api/v1/whip?zones=c0"
    async with relay.http.post(url, data=offer, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        assert resp.headers["Access-Control-Allow-Origin"] == STUDIO
        exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Location", "Link", "ETag", "Accept-Patch", "Allow", "X-Loa-Broadcast"} <= exposed
        location = resp.headers["Location"]
    # An error's answer names the origin too, so the page's script can read why.
    wrong = {**headers, "Authorization": "Bearer wrong"}
    async with relay.http.post(url, data=offer, headers=wrong) as resp:
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == STUDIO
    async with relay.http.patch(relay.url + location, headers=headers) as resp:
        assert resp.status == 405 and resp.headers["Access-Control-Allow-Origin"] == STUDIO
    async with relay.http.delete(relay.url + location, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == STUDIO
    # The rest of the API stays same-origin, whatever the setting.
    async with relay.http.get(f"{relay.url}/api/v1/zones", headers=headers) as resp:
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


# -- a page on another origin, in Chromium -------------------------------------------------
PAGE = """<!doctype html><meta charset="utf-8"><title>studio elsewhere</title>
<script>
window.publish = async (url, token, done) => {
  try {
    const media = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    const pc = window.pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise(ok => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.addEventListener("icegatheringstatechange",
        () => pc.iceGatheringState === "complete" && ok());
    });
    const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/sdp"};
    const resp = await fetch(url, {method: "POST", headers, body: pc.localDescription.sdp});
    const answer = await resp.text();
    window.location_ = resp.headers.get("Location");
    if (resp.status === 201) await pc.setRemoteDescription({type: "answer", sdp: answer});
    done({status: resp.status, location: window.location_, answer,
          broadcast: resp.headers.get("X-Loa-Broadcast")});
  } catch (e) {
    done({error: String(e)});
  }
};
window.sent = async (done) => {
  const out = {};
  (await window.pc.getStats()).forEach(s => {
    if (s.type === "outbound-rtp") out[s.kind] = (out[s.kind] || 0) + s.packetsSent;
  });
  done(out);
};
window.hangUp = async (url, token, done) => {
  const resp = await fetch(url, {method: "DELETE", headers: {"Authorization": "Bearer " + token}});
  window.pc.close();
  done(resp.status);
};
</script>"""


@pytest.fixture
def media_browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    wav = tone_wav(tmp_path / "tone.wav")
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection",
    ):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def page_server() -> TestServer:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def publish(driver: Any, page: str, url: str) -> dict[str, Any]:
    driver.get(page)
    script = "arguments[arguments.length - 1]; window.publish(arguments[0], arguments[1], "
    script += "arguments[arguments.length - 1]);"
    result: dict[str, Any] = driver.execute_async_script(script, url, ADMIN)
    return result


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_page_on_another_origin_publishes_by_whip_in_chromium(
    webrtc_relay: Any, tmp_path: Path, media_browser: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Chromium sends the preflight, then the POST (audio and camera video): the answer
    rejects the video, Chromium accepts that, its microphone reaches c0's speakers, and the
    page reads Location (exposed) and DELETEs the session across origins too. A page on an
    origin that is not listed gets no further than its preflight."""
    caplog.set_level(logging.INFO, logger="loa.web.cors")
    pages = await page_server()
    page = str(pages.make_url("/"))
    config = tree_config(tmp_path)
    listed = web_origin(page.rstrip("/"))
    config = with_changes(config, web=with_changes(config.web, cors_origins=(listed,)))
    relay = await webrtc_relay(config)
    fleet = Fleet(relay.url, [(e.id, e.token or "") for e in config.endpoints])
    await fleet.start()
    try:
        ids = [e.id for e in config.endpoints]
        await wait_for(lambda: on_transport(relay.node, ids), 15, "speakers on UDP")
        whip = f"{relay.url}/api/v1/whip?zones=c0&chime=0"
        t0 = time.monotonic()
        result = await in_thread(publish, media_browser, page, whip)
        assert result.get("status") == 201, result
        assert result["location"].startswith("/api/v1/whip/")
        away = result["broadcast"]  # exposed to the page: it finds its broadcast by it
        assert away.startswith("bc-")
        media = [(m.kind, m.port) for m in Sdp.parse(result["answer"]).media]
        assert media[0][0] == "audio" and media[0][1] > 0
        assert media[1] == ("video", 0)
        await in_thread(
            until,
            media_browser,
            "the peer connection",
            lambda d: d.execute_script("return window.pc.connectionState") == "connected",
            20,
        )
        await wait_for(
            lambda: all(fleet.heard[i].frequency(t0, away) > 0 for i in ("c0-e0", "c0-e1")),
            15,
            "c0 hearing the page's microphone",
        )
        assert fleet.heard["c0-e0"].frequency(t0, away) == pytest.approx(TONE_HZ, rel=0.03)
        assert fleet.heard["c1-e0"].since(t0, away) == []
        await asyncio.sleep(1.0)  # time for video to flow, if it were going to
        sent = await in_thread(media_browser.execute_async_script, "window.sent(arguments[0]);")
        assert sent.get("audio", 0) > 50 and sent.get("video", 0) == 0, sent
        status = await in_thread(
            media_browser.execute_async_script,
            "window.hangUp(arguments[0], arguments[1], arguments[2]);",
            relay.url + result["location"],
            ADMIN,
        )
        assert status == 200
        await wait_for(lambda: away not in relay.node.broadcasts, 5, "the broadcast to end")

        # The same page from an origin that is not listed: the preflight is refused, so
        # the browser never sends the POST, and nothing goes on air.
        elsewhere = page.replace("127.0.0.1", "localhost")
        refused = await in_thread(publish, media_browser, elsewhere, whip)
        assert "Failed to fetch" in refused.get("error", ""), refused
        assert not relay.node.broadcasts
        assert f"CORS preflight to /api/v1/whip from {elsewhere.rstrip('/')} refused" in caplog.text
        audit = (await relay.api("GET", "/audit"))["entries"]
        posts = [e for e in audit if e["action"] == "POST /api/v1/whip"]
        assert len(posts) == 1  # the refused page's POST never came
    finally:
        await fleet.close()
        await pages.close()
