"""A real `loa speaker` behind an impairing UDP link (bench/impair.py) on loopback, against a
real relay: lost packets are asked for (RFC 4585 NACK) and sent again, counted honestly on
both ends; a NAT rebinding is followed within a second, a UDP path dying mid-stream falls
back to the WebSocket within two and returns to UDP when it works again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bench.impair import ImpairingLink, Impairment
from bench.links import Heard, classify, dropouts, recovery_s
from loa.config import with_changes as replace
from tests.conftest import tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport, tone

pytestmark = pytest.mark.e2e


async def impaired_relay(relay_factory: Any, tmp_path: Path, link: ImpairingLink) -> Any:
    """A relay whose speakers are told to send their UDP to ``link``, which forwards it."""
    config = tree_config(tmp_path, communes=1, per_commune=1)
    port = link.bind()
    # keepalives every 10 s (the default): a NAT rebinding is not followed by a keepalive
    relay = replace(config.relay, public_udp_port=port, keepalive_s=10.0, session_timeout_s=35.0)
    config = replace(config, relay=relay)
    relay = await relay_factory(config)
    link.start(("127.0.0.1", relay.node.udp_port))
    return relay


async def test_lost_packets_are_asked_for_and_sent_again(
    relay_factory: Any, tmp_path: Path
) -> None:
    link = ImpairingLink(down=Impairment(loss=0.08), up=Impairment(loss=0.02), seed=7)
    relay = await impaired_relay(relay_factory, tmp_path, link)
    fleet = Fleet(relay.url, [("c0-e0", "tok-c0-e0")])
    speaker = fleet.speakers["c0-e0"]
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ["c0-e0"]), 15, "the speaker on UDP")
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        await wait_for(lambda: speaker.jitter.played >= 250, 20, "5 s of audio played")
        await asyncio.sleep(0.3)
    finally:
        await fleet.close()
        link.close()
    jb, metrics = speaker.jitter, relay.node.metrics
    slots = jb.played + jb.recovered + jb.concealed
    seen = (jb.stats(), metrics.retransmitted, dict(metrics.nack_unserved), link.counts)
    assert link.counts["down"].dropped >= 10  # the link did lose packets
    assert speaker.nacks_sent >= 5 and metrics.nacks_received >= 1
    assert jb.retransmitted >= 10, seen
    # what the relay resent and the speaker played from it: a resend can be lost again (8 %)
    assert jb.retransmitted <= metrics.retransmitted, seen
    assert metrics.retransmitted <= jb.nacked, seen
    # near every frame is played as sent or retransmitted; a resend lost again is left to
    # FEC or concealment (8 % of 8 %: 0.6 %; a loaded machine stalls the loop too)
    assert jb.played / slots >= 0.97, seen
    assert jb.late <= 5, seen
    assert metrics.nack_unserved["malformed"] == 0
    session_rtcp = relay.node.sessions.malformed_nacks
    assert session_rtcp == 0


async def _on_air(relay: Any, speaker: Any, heard: Heard) -> None:
    await wait_for(lambda: speaker.state.value == "udp", 15, "the speaker on UDP")
    await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
    await wait_for(lambda: len(heard.frames) > 50, 10, "a second of audio")


async def test_nat_rebinding_is_followed_within_a_second(
    relay_factory: Any, tmp_path: Path
) -> None:
    link = ImpairingLink()
    relay = await impaired_relay(relay_factory, tmp_path, link)
    # Without synchronised playout: its clock probes (every 0.25 s at first) would carry the
    # new mapping to the server before the path watch re-punches, which is what is tested.
    fleet = Fleet(relay.url, [("c0-e0", "tok-c0-e0")], sync=False)
    speaker, heard = fleet.speakers["c0-e0"], Heard()
    heard.watch(speaker.jitter)
    await fleet.start()
    loop = asyncio.get_running_loop()
    try:
        await _on_air(relay, speaker, heard)
        old = link.mappings()
        broke_at = loop.time()
        link.rebind()  # the pole's NAT gives it a new source port
        await asyncio.sleep(2.0)
    finally:
        await fleet.close()
        link.close()
    back = recovery_s(heard.frames, broke_at)
    assert back is not None and back <= 1.0, back
    session = relay.node.endpoints["c0-e0"].session
    assert session is None or session.addr not in old  # closed by now, or on the new mapping
    assert speaker.repunches >= 1 and speaker.state.value != "ws"
    runs = dropouts(classify(heard.frames, broke_at, loop.time()))
    assert max(runs, default=0) * 0.02 <= 1.0


async def test_udp_dying_mid_stream_falls_back_to_websocket_within_two_seconds_and_back(
    relay_factory: Any, tmp_path: Path
) -> None:
    link = ImpairingLink()
    relay = await impaired_relay(relay_factory, tmp_path, link)
    fleet = Fleet(relay.url, [("c0-e0", "tok-c0-e0")], udp_reprobe_s=30.0)
    speaker, heard = fleet.speakers["c0-e0"], Heard()
    heard.watch(speaker.jitter)
    await fleet.start()
    loop = asyncio.get_running_loop()
    try:
        await _on_air(relay, speaker, heard)
        broke_at = loop.time()
        link.blackhole = True  # UDP dies both ways; the WebSocket (TCP) still works
        await wait_for(lambda: speaker.state.value == "ws", 3, "WebSocket audio")
        await asyncio.sleep(2.5 - (loop.time() - broke_at))
        back = recovery_s(heard.frames, broke_at)
        assert back is not None and back <= 2.0, back
        assert speaker.ws_audio > 20
        link.blackhole = False  # the path returns: probed again after 5 s, not 30
        await wait_for(lambda: speaker.state.value == "udp", 8, "back on UDP")
        udp_before = speaker.udp_audio
        await wait_for(lambda: speaker.udp_audio > udp_before + 20, 3, "audio by UDP again")
    finally:
        await fleet.close()
        link.close()
    ep = relay.node.endpoints["c0-e0"]
    assert ep.session is None or ep.session.transport.value == "udp"
