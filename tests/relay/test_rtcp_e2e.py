"""RTCP with plain RTP receivers: ffmpeg keeps playing with the relay's sender reports on
its RTCP port, and a receiver's report on them reaches the relay (loss, jitter, round trip
in the endpoint's view and in /metrics per pole).

ffmpeg 5.1 itself sends no receiver report here: its rtpdec sends one per 280,000 octets
received, and strace showed none in 14 s of 510 kbit/s audio (700 packets) with
``-sdp_flags rtcp_to_source``; so the round trip is tested with a receiver of our own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency
from loa.codecs.rtcp import ReceiverReport, ReportBlock, SenderReport, parse_rtcp
from loa.codecs.rtp import ts_diff
from loa.config import with_changes as replace
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.core.reception import NTP_EPOCH_OFFSET, ntp_middle
from loa.streamer.base import Frame
from loa.streamer.tone import ToneSource
from tests.conftest import need_binary, tree_config
from tests.relay.fleet import Fleet, wait_for
from tests.relay.relayfix import AUTH, free_port, on_transport, tone

pytestmark = pytest.mark.e2e


async def play_with_ffmpeg(relay: Any, tmp_path: Path, seconds: float) -> tuple[int, bytes, Path]:
    async with relay.http.get(relay.url + "/api/v1/endpoints/rtp0/sdp", headers=AUTH) as resp:
        (tmp_path / "rtp0.sdp").write_text(await resp.text())
    out = tmp_path / "out.raw"
    proc = await asyncio.create_subprocess_exec(
        need_binary("ffmpeg"),
        "-nostdin",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file,udp,rtp",
        # answer RTCP to where it came from, not to the SDP's own c= address
        "-sdp_flags",
        "rtcp_to_source",
        "-i",
        str(tmp_path / "rtp0.sdp"),
        "-t",
        str(seconds),
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        "48000",
        "-y",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(0.5)  # let ffmpeg bind its ports before the first packet
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        _, err = await asyncio.wait_for(proc.communicate(), seconds + 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err, out


def even_port() -> int:
    port = free_port()
    while port % 2:  # RTP on an even port, RTCP on the next (RFC 3550 §11)
        port = free_port()
    return port


async def test_ffmpeg_keeps_playing_with_sender_reports_on_its_rtcp_port(
    relay_factory: Any, tmp_path: Path
) -> None:
    config = tree_config(tmp_path, communes=1, per_commune=0, rtp=(f"127.0.0.1:{even_port()}",))
    config = replace(config, relay=replace(config.relay, rtcp_interval_s=0.5))
    relay = await relay_factory(config)
    code, err, out = await play_with_ffmpeg(relay, tmp_path, 3)
    assert code == 0, err.decode()
    assert relay.node.metrics.rtcp_sent >= 4  # 3 s of audio, one SR each 0.5 s
    pcm = np.frombuffer(out.read_bytes(), dtype=np.int16)
    assert pcm.size >= 48000 * 2
    assert dominant_frequency(pcm[-24000:]) == pytest.approx(1000, rel=0.01)


async def test_a_receivers_report_on_our_sender_report_gives_loss_jitter_and_round_trip(
    relay_factory: Any, tmp_path: Path
) -> None:
    """A plain RTP receiver on loopback (RTP port, RTCP port + 1) that answers each SR with
    an RR naming it (LSR) after holding it 20 ms (DLSR), as RFC 3550 §6.4.1 says."""
    port = even_port()
    rtp, rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    rtp.bind(("127.0.0.1", port))
    rtcp.bind(("127.0.0.1", port + 1))
    rtcp.setblocking(False)
    config = tree_config(tmp_path, communes=1, per_commune=0, rtp=(f"127.0.0.1:{port}",))
    config = replace(config, relay=replace(config.relay, rtcp_interval_s=0.5))
    relay = await relay_factory(config)
    loop = asyncio.get_running_loop()
    try:
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        data, source = await asyncio.wait_for(loop.sock_recvfrom(rtcp, 2048), 5)
        sr = parse_rtcp(data)[0]
        assert isinstance(sr, SenderReport)
        assert source[1] == relay.node.udp_port  # from the relay's one socket
        ep = relay.node.endpoints["rtp0"]
        assert ep.rewriter is not None and sr.ssrc == ep.rewriter.ssrc
        assert abs(sr.ntp_timestamp / 2**32 - NTP_EPOCH_OFFSET - time.time()) < 1.0
        await asyncio.sleep(0.02)
        block = ReportBlock(sr.ssrc, 3, 17, 4242, 96, ntp_middle(sr.ntp_timestamp), 1311)
        rtcp.sendto(bytes(ReceiverReport(0xABCD, (block,))), source)
        await wait_for(lambda: ep.reception is not None, 5, "the receiver report")
    finally:
        rtp.close()
        rtcp.close()
    reception = ep.reception
    assert reception is not None and reception.rtt_s is not None
    assert 0.0 <= reception.rtt_s < 0.5
    assert (reception.cumulative_lost, reception.highest_sequence) == (17, 4242)
    assert reception.jitter_s == pytest.approx(0.002)
    view = await relay.api("GET", "/endpoints/rtp0", None, 200)
    assert view["reception"]["cumulative_lost"] == 17
    assert view["reception"]["jitter_ms"] == 2.0
    async with relay.http.get(relay.url + "/metrics", headers=AUTH) as resp:
        metrics = await resp.text()
    assert 'loa_pole_packets_lost{endpoint="rtp0"} 17' in metrics
    assert 'loa_pole_jitter_seconds{endpoint="rtp0"} 0.002' in metrics
    assert 'loa_pole_rtt_seconds{endpoint="rtp0"}' in metrics
    assert relay.node.metrics.rtcp_received == 1


async def test_a_stream_that_starts_or_switches_gets_a_sender_report_at_once(
    relay_factory: Any, tmp_path: Path
) -> None:
    """With the usual 5 s interval, the first frame of a broadcast and the first after a
    switch are each followed by an SR: a receiver knows their capture time from the start.
    The SR's (NTP, RTP) pair puts the packet just received at its send time."""
    port = even_port()
    rtp, rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    rtp.bind(("127.0.0.1", port))
    rtcp.bind(("127.0.0.1", port + 1))
    rtp.setblocking(False)
    rtcp.setblocking(False)
    config = tree_config(tmp_path, communes=1, per_commune=0, rtp=(f"127.0.0.1:{port}",))
    relay = await relay_factory(config)
    assert relay.node.config.relay.rtcp_interval_s == 5.0
    loop = asyncio.get_running_loop()

    async def first_packet_and_report() -> None:
        data = await asyncio.wait_for(loop.sock_recv(rtp, 2048), 5)
        arrived = time.time()
        timestamp = int.from_bytes(data[4:8], "big")
        report, _ = await asyncio.wait_for(loop.sock_recvfrom(rtcp, 2048), 0.5)
        sr = parse_rtcp(report)[0]
        assert isinstance(sr, SenderReport)
        sent = sr.ntp_timestamp / 2**32 - NTP_EPOCH_OFFSET
        captured = sent - ((sr.rtp_timestamp - timestamp) & 0xFFFFFFFF) / 48000
        assert abs(captured - arrived) < 0.05

    try:
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        await first_packet_and_report()
        await relay.api("POST", "/broadcasts", tone(500, ["c0"], "emergency"), 201)
        while True:  # drain the first broadcast's packets up to the switch (marker bit)
            data = await asyncio.wait_for(loop.sock_recv(rtp, 2048), 5)
            if data[1] & 0x80:
                break
        report, _ = await asyncio.wait_for(loop.sock_recvfrom(rtcp, 2048), 0.5)
        sr = parse_rtcp(report)[0]
        assert isinstance(sr, SenderReport)
        switched_ts = int.from_bytes(data[4:8], "big")
        assert 0 <= (sr.rtp_timestamp - switched_ts) & 0xFFFFFFFF < 48000 // 10
    finally:
        rtp.close()
        rtcp.close()


class BacklogTone(ToneSource):
    """A live source that hands over a backlog at once (a WHIP publisher's audio queued in
    aiortc while the relay was busy), then a frame every 20 ms of real time."""

    live = True

    def __init__(self, backlog: int) -> None:
        super().__init__(700)
        self.backlog = backlog
        self.due: float | None = None

    async def read(self) -> Frame | None:
        loop = asyncio.get_running_loop()
        if self.backlog:
            self.backlog -= 1
        else:
            self.due = (loop.time() if self.due is None else self.due) + 0.02
            await asyncio.sleep(max(0.0, self.due - loop.time()))
        return await super().read()


async def test_a_live_sources_backlog_moves_its_capture_timeline_and_a_report_says_so(
    relay_factory: Any, tmp_path: Path
) -> None:
    """15 frames at once, then one every 20 ms: the first SR puts the backlog's first frame
    at its send time; once the stream is steady another SR comes, and it puts the steady
    frames at their send time, ~280 ms earlier than the first report would (a speaker in
    step would otherwise hold them 280 ms beyond D, and its buffer is bounded at D)."""
    port = even_port()
    rtp, rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for sock, p in ((rtp, port), (rtcp, port + 1)):
        sock.bind(("127.0.0.1", p))
        sock.setblocking(False)
    config = tree_config(tmp_path, communes=1, per_commune=0, rtp=(f"127.0.0.1:{port}",))
    relay = await relay_factory(config)
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, int]] = []  # (arrival, RTP timestamp)
    reports: list[SenderReport] = []

    async def receive(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            with contextlib.suppress(BlockingIOError):
                while True:
                    data = rtp.recv(2048)
                    arrivals.append((time.time(), int.from_bytes(data[4:8], "big")))
            with contextlib.suppress(BlockingIOError):
                while True:
                    sr = parse_rtcp(rtcp.recv(2048))[0]
                    assert isinstance(sr, SenderReport)
                    reports.append(sr)
            await asyncio.sleep(0.002)

    def captured(sr: SenderReport, timestamp: int) -> float:
        sent = sr.ntp_timestamp / 2**32 - NTP_EPOCH_OFFSET
        return sent + ts_diff(timestamp, sr.rtp_timestamp) / 48000

    try:
        spec = BroadcastSpec(id="bl", priority=Priority.LIVE, target_zones=frozenset({"c0"}))
        await relay.node.start_broadcast(
            spec, BacklogTone(15), what="bl", source_kind="whip", created_by="t"
        )
        await receive(1.5)
    finally:
        rtp.close()
        rtcp.close()
    assert len(arrivals) >= 60 and len(reports) == 2, (len(arrivals), reports)
    first, second = reports
    steady_at, steady_ts = arrivals[-1]
    # the first report's timeline (the backlog's first frame as sent) puts the steady
    # frames 14 frames (280 ms) after they were sent
    assert 0.2 < captured(first, steady_ts) - steady_at < 0.36
    assert abs(captured(second, steady_ts) - steady_at) < 0.05  # the second: as sent


async def test_speakers_get_sender_reports_and_send_receiver_reports(
    relay_factory: Any, tmp_path: Path
) -> None:
    """Real `loa speaker` clients on UDP: the server's SRs reach them (not taken for audio),
    their RRs come back with the SR's LSR, so the relay knows each pole's round trip."""
    config = tree_config(tmp_path, communes=1, per_commune=3)
    config = replace(config, relay=replace(config.relay, rtcp_interval_s=0.5))
    relay = await relay_factory(config)
    ids = [e.id for e in config.endpoints]
    fleet = Fleet(relay.url, [(e.id, e.token) for e in config.endpoints], status_interval_s=0.5)
    await fleet.start()
    try:
        await wait_for(lambda: on_transport(relay.node, ids), 15, "3 speakers on UDP")
        await relay.api("POST", "/broadcasts", tone(1000, ["c0"], "live"), 201)
        t0 = time.monotonic()
        eps = [relay.node.endpoints[i] for i in ids]
        await wait_for(
            lambda: all(e.reception is not None and e.reception.rtt_s is not None for e in eps),
            10,
            "a receiver report naming a sender report from every speaker",
        )
        await asyncio.sleep(0.5)
        for ep_id, speaker in fleet.speakers.items():
            assert speaker.reports.sender_reports >= 1
            assert speaker.rtcp_sent >= 1
            assert speaker.bad_packets == 0  # SRs were not taken for audio
            assert fleet.heard[ep_id].frequency(t0) == pytest.approx(1000, rel=0.02)
        for ep in eps:
            assert ep.reception is not None and ep.reception.rtt_s is not None
            assert 0.0 <= ep.reception.rtt_s < 0.5
            assert ep.reception.cumulative_lost == 0
            assert ep.reception.highest_sequence > 10
    finally:
        await fleet.close()
    async with relay.http.get(relay.url + "/metrics", headers=AUTH) as resp:
        metrics = await resp.text()
    for ep_id in ids:
        assert f'loa_pole_rtt_seconds{{endpoint="{ep_id}"}}' in metrics
