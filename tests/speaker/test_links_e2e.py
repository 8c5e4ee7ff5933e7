"""A real `loa speaker` behind an impairing UDP link (bench/impair.py) on loopback, against a
real relay: lost packets are asked for (RFC 4585 NACK) and sent again, counted honestly on
both ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bench.impair import ImpairingLink, Impairment
from loa.config import with_changes as replace
from tests.conftest import tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import on_transport, tone

pytestmark = pytest.mark.e2e


async def impaired_relay(relay_factory: Any, tmp_path: Path, link: ImpairingLink) -> Any:
    """A relay whose speakers are told to send their UDP to ``link``, which forwards it."""
    config = tree_config(tmp_path, communes=1, per_commune=1)
    port = link.bind()
    config = replace(config, relay=replace(config.relay, public_udp_port=port))
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
    assert link.counts["down"].dropped >= 10  # the link did lose packets
    assert speaker.nacks_sent >= 5 and metrics.nacks_received >= 1
    assert jb.retransmitted >= 10
    # what the relay resent and the speaker played from it: a resend can be lost again (8 %)
    assert jb.retransmitted <= metrics.retransmitted
    assert metrics.retransmitted <= jb.nacked
    # near every frame is played as sent or retransmitted; a resend lost again is left to
    # FEC or concealment
    assert jb.played / slots >= 0.98, (vars(jb), vars(metrics), link.counts)
    assert jb.late <= 2
    assert metrics.nack_unserved["malformed"] == 0
    session_rtcp = relay.node.sessions.malformed_nacks
    assert session_rtcp == 0
