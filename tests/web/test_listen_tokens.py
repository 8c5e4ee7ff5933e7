"""Listening without an account (issue 14 item 7): ``GET /api/v1/zones/{id}/listen`` gives a
zone's Ogg and WHEP URLs with its listen token, and WHEP takes that token (``?token=`` or
Bearer) as the Ogg mount does. On a real server, loopback only, with aiortc listeners."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from loa.codecs.pcm import dominant_frequency
from loa.config import with_changes
from loa.web.listen import listen_token
from tests.conftest import ADMIN, AUTH, Relay, tree_config
from tests.relay.fleet import wait_for
from tests.relay.relayfix import tone as tone_body
from tests.support.webrtc import WhepClient
from tests.web import test_whip as whip_tests
from tests.web.test_api_admin import account
from tests.web.test_whep import record
from tests.web.test_whip import offer_sdp, peers_of

loopback = whip_tests.loopback
webrtc_relay = whip_tests.webrtc_relay

pytestmark = pytest.mark.e2e


def listeners(relay: Relay) -> int:
    return sum(1 for e in relay.node.endpoints.values() if e.listener)


async def get(relay: Relay, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with relay.http.get(f"{relay.url}/api/v1{path}", headers=headers) as resp:
        return resp.status, await resp.json()


async def post_offer(relay: Relay, query: str, headers: dict[str, str]) -> tuple[int, str]:
    offer = await offer_sdp(direction="recvonly")
    hdrs = {**headers, "Content-Type": "application/sdp"}
    async with relay.http.post(f"{relay.url}/api/v1/whep{query}", data=offer, headers=hdrs) as r:
        return r.status, await r.text()


# -- GET /zones/{id}/listen ----------------------------------------------------------------
async def test_the_listen_urls_of_a_zone(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    token = listen_token(ADMIN, "c0")
    status, urls = await get(relay, "/zones/c0/listen", AUTH)
    assert status == 200
    assert urls == {
        "zone": "c0",
        "ogg": f"{relay.url}/listen/c0.ogg?token={token}",
        "whep": f"{relay.url}/api/v1/whep?zone=c0&token={token}",
        "token": token,
    }
    # The Ogg URL plays as it is: an Ogg Opus stream starts.
    async with relay.http.get(urls["ogg"]) as resp:
        assert resp.status == 200 and resp.content_type == "audio/ogg"
        head = await resp.content.readexactly(64)
    assert head.startswith(b"OggS") and b"OpusHead" in head


async def test_who_may_see_the_listen_urls(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    app = relay.server.app
    op = await account(app, "op", "operator", "c0")
    viewer = await account(app, "viewer", "viewer")
    assert (await get(relay, "/zones/c0/listen", op))[1]["token"] == listen_token(ADMIN, "c0")
    for zone in ("c1", "p", "nowhere"):  # out of scope and missing look alike
        status, data = await get(relay, f"/zones/{zone}/listen", op)
        assert status == 404 and data["error"]["code"] == "not_found", zone
    assert (await get(relay, "/zones/p/listen", viewer))[0] == 200
    status, data = await get(relay, "/zones/c0/listen", {})
    assert status == 401
    # The listen token is no API token: it does not open the API.
    listen = {"Authorization": f"Bearer {listen_token(ADMIN, 'c0')}"}
    assert (await get(relay, "/zones/c0/listen", listen))[0] == 401
    assert (await get(relay, f"/zones?token={listen_token(ADMIN, 'c0')}", {}))[0] == 401


async def test_without_an_admin_token_there_is_no_listen_token(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    config = with_changes(tree_config(tmp_path), admin_token=None)
    relay = await webrtc_relay(config)
    viewer = await account(relay.server.app, "viewer", "viewer")
    status, urls = await get(relay, "/zones/c1/listen", viewer)
    assert status == 200
    assert urls == {
        "zone": "c1",
        "ogg": None,
        "whep": f"{relay.url}/api/v1/whep?zone=c1",
        "token": None,
    }
    client = WhepClient(urls["whep"], token=viewer["Authorization"].split()[1])
    try:
        await client.start()  # an API token still opens WHEP
    finally:
        await client.close()


# -- WHEP with the zone's listen token -----------------------------------------------------
async def test_whep_plays_with_the_token_in_the_url_and_ends_by_it(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    """A player given only the URL: no Authorization header on the POST or the DELETE."""
    relay = await webrtc_relay(tree_config(tmp_path))
    await relay.api("POST", "/broadcasts", tone_body(880, ["c0"], "live"), 201)
    _, urls = await get(relay, "/zones/c0/listen", AUTH)
    client = WhepClient(urls["whep"])
    try:
        track = await client.start()
        assert client.location is not None
        location = urlsplit(client.location)
        assert location.path.startswith("/api/v1/whep/")
        assert parse_qs(location.query) == {"token": [urls["token"]]}
        pcm = await record(track, 1.0)
        assert dominant_frequency(pcm[-24000:]) == pytest.approx(880, rel=0.02)
        assert listeners(relay) == 1
        await client.close()  # DELETE the Location, which carries the token
        await wait_for(lambda: not peers_of(relay).sessions, 5, "the session to end")
        assert listeners(relay) == 0
    finally:
        await client.close()
    audit = (await relay.api("GET", "/audit"))["entries"]
    queries = [e["detail"]["query"] for e in audit if e["action"].endswith("/whep")]
    assert queries == [{"zone": "c0", "token": "[redacted]"}]
    deletes = [e for e in audit if e["action"] == "DELETE /api/v1/whep/{session}"]
    assert [e["detail"]["status"] for e in deletes] == [200]
    assert deletes[0]["detail"]["query"] == {"token": "[redacted]"}


async def test_whep_plays_with_the_token_as_bearer(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    token = listen_token(ADMIN, "c1")
    client = WhepClient(f"{relay.url}/api/v1/whep?zone=c1", token=token)
    try:
        await client.start()
        assert client.location is not None and "token" not in client.location
        assert listeners(relay) == 1
        await client.close()  # DELETE with the same Bearer
        await wait_for(lambda: listeners(relay) == 0, 5, "the listener to leave")
    finally:
        await client.close()


async def test_whep_refuses_wrong_and_other_zones_tokens(webrtc_relay: Any, tmp_path: Path) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    c1, parent = listen_token(ADMIN, "c1"), listen_token(ADMIN, "p")
    for query, headers in (
        ("?zone=c0&token=wrong", {}),
        ("?zone=c0", {"Authorization": "Bearer wrong"}),
        (f"?zone=c0&token={c1}", {}),  # another zone's token
        ("?zone=c0", {"Authorization": f"Bearer {c1}"}),
        (f"?zone=c0&token={parent}", {}),  # the parent's token opens only the parent
        ("?zone=nowhere&token=wrong", {}),  # refused before the zone is looked up
    ):
        status, text = await post_offer(relay, query, headers)
        assert status == 401, (query, headers, text)
        assert "needs an API token, or the zone's listen token" in text
    status, text = await post_offer(relay, "?zone=c0", {})
    assert status == 401 and "missing Authorization" in text
    # A valid token for a zone that does not exist: now it may know, and says so.
    nowhere = listen_token(ADMIN, "nowhere")
    status, text = await post_offer(relay, f"?zone=nowhere&token={nowhere}", {})
    assert status == 404 and "zone nowhere not found" in text
    # The listen token does not publish.
    hdrs = {
        "Authorization": f"Bearer {listen_token(ADMIN, 'c0')}",
        "Content-Type": "application/sdp",
    }
    async with relay.http.post(
        f"{relay.url}/api/v1/whip?zones=c0", data=await offer_sdp(), headers=hdrs
    ) as resp:
        assert resp.status == 401
    assert listeners(relay) == 0 and not peers_of(relay).sessions and not relay.node.broadcasts


async def test_a_session_is_ended_only_with_its_zones_token(
    webrtc_relay: Any, tmp_path: Path
) -> None:
    relay = await webrtc_relay(tree_config(tmp_path))
    token = listen_token(ADMIN, "c0")
    client = WhepClient(f"{relay.url}/api/v1/whep?zone=c0", token=token)
    try:
        await client.start()
        assert client.location is not None
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {listen_token(ADMIN, 'c1')}"},
        ):
            async with relay.http.delete(client.location, headers=headers) as resp:
                assert resp.status == 401, headers
        async with relay.http.delete(
            f"{client.location}?token={listen_token(ADMIN, 'c1')}"
        ) as resp:
            assert resp.status == 401
        assert listeners(relay) == 1  # still listening
        async with relay.http.delete(f"{client.location}?token={token}") as resp:
            assert resp.status == 200
        await wait_for(lambda: listeners(relay) == 0, 5, "the listener to leave")
        client.location = None
    finally:
        await client.close()
