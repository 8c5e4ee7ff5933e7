"""Speaker sessions, server side: binding, acks, replays, NAT rebinding, timeouts, transports,
replacement and RTCP demux. RTCP fixtures are written by aiortc, a real peer's serialiser."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSdesPacket, RtcpSourceInfo
from hypothesis import given
from hypothesis import strategies as st

from loa.relay.core.rewriter import Rewriter
from loa.relay.core.session import (
    DROP_REASONS,
    Accepted,
    Dropped,
    Opened,
    RtcpReceived,
    Session,
    SessionTable,
    Transport,
)
from loa.relay.core.wire import ControlDatagram, DatagramType

KEY = bytes(range(32))
SID = bytes.fromhex("a1a2a3a4a5a6a7a8")
SSRC = 0x11223344
PHONE = ("203.0.113.9", 40000)  # the speaker's 4G NAT mapping
OTHER = ("198.51.100.7", 5555)


def dgram(
    counter: int,
    kind: DatagramType = DatagramType.HELLO,
    session: bytes = SID,
    key: bytes = KEY,
) -> bytes:
    return bytes(ControlDatagram.signed(kind, session, counter, key))


def rr(*reports: RtcpReceiverInfo, sender: int = 0x5151) -> bytes:
    return bytes(RtcpRrPacket(ssrc=sender, reports=list(reports)))


def block(
    ssrc: int = SSRC, lost: int = 3, fraction: int = 26, jitter: int = 240
) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=ssrc, fraction_lost=fraction, packets_lost=lost, highest_sequence=70_000,
        jitter=jitter, lsr=0, dlsr=0,
    )  # fmt: skip


@pytest.fixture
def table() -> SessionTable:
    return SessionTable(keepalive_s=10, session_timeout_s=35)


@pytest.fixture
def session(table: SessionTable) -> Session:
    return table.open("loa-1", SID, KEY, SSRC, now=0.0).session


def accept(table: SessionTable, data: bytes, addr: tuple[str, int], now: float) -> Accepted:
    result = table.on_datagram(data, addr, now)
    assert isinstance(result, Accepted), result
    return result


def drops(table: SessionTable) -> dict[str, int]:
    return {reason: n for reason, n in table.drops.items() if n}


def test_constructor_checks_timeouts() -> None:
    with pytest.raises(ValueError) as info:
        SessionTable(keepalive_s=10, session_timeout_s=10)
    assert str(info.value) == (
        "session_timeout_s must exceed keepalive_s > 0, got keepalive_s=10 session_timeout_s=10"
    )


def test_open_starts_without_udp(table: SessionTable, session: Session) -> None:
    assert session.transport is Transport.NONE
    assert session.destination is None
    assert (session.id, session.endpoint_id, session.hex_id) == (SID, "loa-1", SID.hex())
    assert session.rewriter.ssrc == SSRC
    assert table.get(SID) is session
    assert table.for_endpoint("loa-1") is session
    assert list(table) == [session]
    assert len(table) == 1
    assert table.drops == dict.fromkeys(DROP_REASONS, 0)


@pytest.mark.parametrize(
    ("sid", "key", "message"),
    [
        (SID[:4], KEY, "session id must be 8 bytes, got 4"),
        (bytes(8), KEY[:16], "session key must be 32 bytes, got 16"),
        (SID, KEY, "session id a1a2a3a4a5a6a7a8 is already open"),
    ],
)
def test_open_checks_its_arguments(
    table: SessionTable, session: Session, sid: bytes, key: bytes, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        table.open("loa-2", sid, key, 1, now=0.0)
    assert str(info.value) == message
    assert table.for_endpoint("loa-2") is None


def test_hello_binds_and_is_acked_with_the_key(table: SessionTable, session: Session) -> None:
    result = accept(table, dgram(0), PHONE, now=1.5)
    assert result.session is session
    assert result.addr_changed
    assert (session.transport, session.destination, session.addr) == (Transport.UDP, PHONE, PHONE)
    assert (session.last_seen, session.counter, session.acks) == (1.5, 0, 1)
    assert table.for_address(PHONE) is session
    ack = ControlDatagram.parse(result.reply)
    assert (ack.type, ack.session, ack.counter) == (DatagramType.ACK, SID, 0)
    assert ack.verify(KEY)
    assert not ack.verify(bytes(32))


def test_keepalive_from_the_same_address(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    result = accept(table, dgram(2, DatagramType.KEEPALIVE), PHONE, now=10.0)
    assert not result.addr_changed
    assert ControlDatagram.parse(result.reply).counter == 2
    assert (session.last_seen, session.acks, session.destination) == (10.0, 2, PHONE)


@pytest.mark.parametrize("counter", [5, 4, 0])
def test_replay_is_dropped(table: SessionTable, session: Session, counter: int) -> None:
    accept(table, dgram(5), PHONE, now=0.0)
    result = table.on_datagram(dgram(counter, DatagramType.KEEPALIVE), OTHER, 3.0)
    assert result == Dropped("replay")
    assert drops(table) == {"replay": 1}
    assert (session.destination, session.last_seen, session.counter) == (PHONE, 0.0, 5)


def test_forged_mac_is_dropped(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    forged = dgram(2, key=bytes(32))
    assert table.on_datagram(forged, OTHER, 1.0) == Dropped("bad_mac")
    assert drops(table) == {"bad_mac": 1}
    assert (session.destination, session.counter) == (PHONE, 1)
    assert table.for_address(OTHER) is None


def test_unknown_session_is_dropped(table: SessionTable, session: Session) -> None:
    result = table.on_datagram(dgram(1, session=bytes(8)), PHONE, 0.0)
    assert result == Dropped("unknown_session")
    assert drops(table) == {"unknown_session": 1}
    assert session.destination is None


def test_a_probe_is_acked_with_its_time_echoed_and_the_servers_arrival_time(
    table: SessionTable, session: Session
) -> None:
    probe = bytes(ControlDatagram.signed(DatagramType.KEEPALIVE, SID, 3, KEY, (123456789,)))
    result = table.on_datagram(probe, PHONE, 5.0, unix_s=1_700_000_000.25)
    assert isinstance(result, Accepted)
    ack = ControlDatagram.parse(result.reply)
    assert ack.verify(KEY) and ack.counter == 3
    t2 = (1_700_000_000 + 2_208_988_800) << 32 | 1 << 30  # NTP: seconds since 1900, .25
    assert ack.times == (123456789, t2, t2)
    # without the wall clock (or for a plain keepalive) the ack is plain, as in version 1
    plain = accept(table, dgram(4, DatagramType.KEEPALIVE), PHONE, now=6.0)
    assert ControlDatagram.parse(plain.reply).times == ()
    probe = bytes(ControlDatagram.signed(DatagramType.KEEPALIVE, SID, 5, KEY, (1,)))
    assert ControlDatagram.parse(accept(table, probe, PHONE, now=7.0).reply).times == ()


def test_a_speaker_sending_an_answer_is_unexpected(table: SessionTable, session: Session) -> None:
    answer = bytes(ControlDatagram.signed(DatagramType.KEEPALIVE, SID, 3, KEY, (1, 2, 3)))
    assert table.on_datagram(answer, PHONE, 0.0, 1.0) == Dropped("unexpected_type")
    assert session.destination is None


def test_ack_from_a_peer_is_unexpected(table: SessionTable, session: Session) -> None:
    result = table.on_datagram(dgram(1, DatagramType.ACK), PHONE, 0.0)
    assert result == Dropped("unexpected_type")
    assert session.destination is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"\x80", "malformed"),
        (b"LOA", "malformed"),
        (dgram(1)[:-1], "malformed"),
        (b"LOA\x02" + dgram(1)[4:], "malformed"),
        (b"GET / HTTP/1.1\r\n\r\n", "malformed"),
        (b"\x00" * 40, "malformed"),
        (b"\x80\x6f\x00\x01", "malformed"),  # RTP-looking but shorter than a header
        (Rewriter.source_packet(b"\xfc\x00"), "rtp_from_peer"),
        (b"\x80\xef" + bytes(10) + b"\xfc", "rtp_from_peer"),  # marker set, PT 111
    ],
)
def test_garbage_is_dropped_and_counted(
    table: SessionTable, session: Session, data: bytes, reason: str
) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    assert table.on_datagram(data, PHONE, 1.0) == Dropped(reason)  # type: ignore[arg-type]
    assert drops(table) == {reason: 1}
    assert (session.destination, session.counter, session.last_seen) == (PHONE, 1, 0.0)


ADDRESSES = st.sampled_from([PHONE, OTHER, ("203.0.113.9", 40001)])
DATAGRAMS = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=22, max_size=22).map(lambda rest: b"LOA" + rest),  # control-sized
    st.binary(max_size=60).map(lambda rest: b"\x81\xc9" + rest),  # RTCP-looking
    st.binary(max_size=60).map(lambda rest: b"\x80\x6f" + rest),  # RTP-looking
)


@given(st.lists(st.tuples(DATAGRAMS, ADDRESSES), max_size=30))
def test_random_datagrams_never_raise_nor_move_a_destination(
    datagrams: list[tuple[bytes, tuple[str, int]]],
) -> None:
    table = SessionTable()
    a = table.open("loa-1", SID, KEY, SSRC, now=0.0).session
    b = table.open("loa-2", bytes(8), KEY, SSRC + 1, now=0.0).session
    accept(table, dgram(9), PHONE, now=0.0)
    dropped = 0
    for data, addr in datagrams:
        result = table.on_datagram(data, addr, 1.0)
        assert isinstance(result, Dropped | RtcpReceived)
        dropped += isinstance(result, Dropped)
        if isinstance(result, RtcpReceived):
            assert addr == PHONE
            assert result.session is a
            assert result.data == data
    assert sum(table.drops.values()) == dropped
    assert (a.destination, a.counter, a.last_seen) == (PHONE, 9, 0.0)
    assert (b.destination, b.transport, b.counter) == (None, Transport.NONE, -1)
    assert table.for_address(PHONE) is a
    assert [table.for_address(x) for x in (OTHER, ("203.0.113.9", 40001))] == [None, None]


def test_nat_rebinding_moves_the_destination(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    rebound = ("203.0.113.9", 40123)
    result = accept(table, dgram(2, DatagramType.KEEPALIVE), rebound, now=10.0)
    assert result.addr_changed
    assert result.session is session
    assert (session.destination, session.transport) == (rebound, Transport.UDP)
    assert table.for_address(rebound) is session
    assert table.for_address(PHONE) is None  # the old mapping is forgotten
    assert table.on_datagram(rr(block()), PHONE, 11.0) == Dropped("unknown_address")
    # a copy of the older keepalive arriving late from the old port changes nothing
    assert table.on_datagram(dgram(1), PHONE, 12.0) == Dropped("replay")
    assert session.destination == rebound


def test_address_taken_over_by_another_session(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    sid2 = bytes.fromhex("b1b2b3b4b5b6b7b8")
    other = table.open("loa-2", sid2, KEY, 7, now=1.0).session
    accept(table, dgram(1, session=sid2), PHONE, now=2.0)
    assert (other.destination, table.for_address(PHONE)) == (PHONE, other)
    assert (session.destination, session.transport) == (None, Transport.NONE)
    assert table.takeovers == 1


def test_silence_expires_udp_back_to_none(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=100.0)
    accept(table, dgram(2, DatagramType.KEEPALIVE), PHONE, now=120.0)
    assert table.expire(now=154.9) == []
    assert session.destination == PHONE
    assert table.expire(now=155.0) == [session]
    assert (session.transport, session.destination, session.addr) == (Transport.NONE, None, None)
    assert table.for_address(PHONE) is None
    assert table.expire(now=200.0) == []  # reported once
    result = accept(table, dgram(3), PHONE, now=201.0)  # the next hello brings UDP back
    assert result.addr_changed
    assert (session.transport, session.destination) == (Transport.UDP, PHONE)


def test_expire_leaves_other_sessions_alone(table: SessionTable, session: Session) -> None:
    sid2 = bytes.fromhex("b1b2b3b4b5b6b7b8")
    fresh = table.open("loa-2", sid2, KEY, 7, now=0.0).session
    accept(table, dgram(1), PHONE, now=0.0)
    accept(table, dgram(1, session=sid2), OTHER, now=30.0)
    assert table.expire(now=40.0) == [session]
    assert (fresh.transport, fresh.destination) == (Transport.UDP, OTHER)


def test_websocket_transport(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    assert table.set_transport(SID, "ws") is session
    assert (session.transport, session.destination) == (Transport.WS, None)
    # the speaker keeps probing UDP while on WS: probes are acked and bind, audio stays on WS
    rebound = ("203.0.113.9", 41000)
    assert accept(table, dgram(2), rebound, now=30.0).addr_changed
    assert (session.transport, session.destination, session.addr) == (Transport.WS, None, rebound)
    table.set_transport(SID, "udp")
    assert (session.transport, session.destination) == (Transport.UDP, rebound)


def test_websocket_session_expiry_is_silent(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    table.set_transport(SID, "ws")
    assert table.expire(now=35.0) == []  # it was not on UDP: nothing to tell the speaker
    assert (session.transport, session.addr) == (Transport.WS, None)
    table.set_transport(SID, "udp")  # no proven UDP path any more
    assert (session.transport, session.destination) == (Transport.NONE, None)


def test_set_transport_errors(table: SessionTable, session: Session) -> None:
    with pytest.raises(ValueError) as info:
        table.set_transport(SID, "tcp")
    assert str(info.value) == "transport mode must be 'ws' or 'udp', got 'tcp'"
    with pytest.raises(KeyError) as missing:
        table.set_transport(bytes(8), "ws")
    assert missing.value.args == ("no open session 0000000000000000",)
    assert session.transport is Transport.NONE


def test_second_open_replaces_the_first(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    sid2 = bytes.fromhex("c1c2c3c4c5c6c7c8")
    opened = table.open("loa-1", sid2, bytes(32), 99, now=5.0)
    assert isinstance(opened, Opened)
    assert opened.replaced is session
    assert session.closed
    assert not opened.session.closed
    assert table.for_endpoint("loa-1") is opened.session
    assert table.get(SID) is None
    assert len(table) == 1
    assert table.for_address(PHONE) is None
    assert table.on_datagram(dgram(2), PHONE, 6.0) == Dropped("unknown_session")
    # the ghost's WebSocket handler closing late must not touch the new session
    assert table.close(SID) is None
    assert table.for_endpoint("loa-1") is opened.session
    accept(table, dgram(1, session=sid2, key=bytes(32)), PHONE, now=7.0)
    assert opened.session.destination == PHONE


def test_close_forgets_the_session(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    assert table.close(SID) is session
    assert session.closed
    assert (len(table), table.for_endpoint("loa-1"), table.for_address(PHONE)) == (0, None, None)
    assert table.on_datagram(dgram(2), PHONE, 1.0) == Dropped("unknown_session")
    assert table.on_datagram(rr(block()), PHONE, 1.0) == Dropped("unknown_address")


def test_rtcp_receiver_report_is_demuxed_and_read(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    report = rr(block(ssrc=0x999), block(lost=-2, fraction=64, jitter=480))
    sdes = bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=0x5151, items=[(1, b"loa-1")])]))
    result = table.on_datagram(report + sdes, PHONE, 4.0)
    assert result == RtcpReceived(session, report + sdes)
    assert (session.rtcp_packets, session.receiver_reports) == (1, 1)
    assert (session.fraction_lost, session.cumulative_lost) == (64, -2)
    assert (session.highest_sequence, session.jitter, session.jitter_ms) == (70_000, 480, 10.0)
    assert session.last_report_at == 4.0
    assert drops(table) == {}


def test_rtcp_about_another_ssrc_counts_but_keeps_fields(
    table: SessionTable, session: Session
) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    assert isinstance(table.on_datagram(rr(block(ssrc=1)), PHONE, 1.0), RtcpReceived)
    assert isinstance(table.on_datagram(rr(), PHONE, 2.0), RtcpReceived)
    assert (session.rtcp_packets, session.receiver_reports) == (2, 2)
    assert (session.fraction_lost, session.jitter, session.jitter_ms) == (None, None, None)


@pytest.mark.parametrize(
    "data",
    [
        rr(block())[:-4],  # length field claims more than arrived
        b"\x82" + rr(block())[1:],  # claims two report blocks, holds one
        rr(block()) + b"\x81\xc9",  # a truncated second packet
        rr(block()) + b"\x41\xc9\x00\x00",  # a second packet that is not version 2
    ],
)
def test_malformed_rtcp_is_dropped(table: SessionTable, session: Session, data: bytes) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    assert table.on_datagram(data, PHONE, 1.0) == Dropped("malformed")
    assert (session.rtcp_packets, session.receiver_reports, session.jitter) == (0, 0, None)


def test_rtcp_from_an_unknown_address_is_dropped(table: SessionTable, session: Session) -> None:
    accept(table, dgram(1), PHONE, now=0.0)
    assert table.on_datagram(rr(block()), OTHER, 1.0) == Dropped("unknown_address")
    assert drops(table) == {"unknown_address": 1}
    assert session.rtcp_packets == 0


def test_send_counters_follow_the_rewriter(session: Session) -> None:
    source = Rewriter.source_packet(bytes(100))
    for i in range(3):
        session.rewriter.rewrite(source, 1, i)
    assert (session.packets_sent, session.bytes_sent) == (3, 3 * 112)
