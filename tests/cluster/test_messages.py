"""Control messages: the envelope on the wire, each shape's round trip and refusals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.cluster.messages import (
    Assignment,
    BroadcastStarted,
    BroadcastStopped,
    Envelope,
    ItemBoundary,
    Message,
    NodeStatus,
    SpeakerCommand,
)
from loa.relay.core.priority import BroadcastSpec, Priority

SPEC = BroadcastSpec(
    "bc-1", Priority.EMERGENCY, frozenset({"c1", "c0"}), frozenset(), origin_zone="p",
    expires_at=1_700_000_600.5,
)  # fmt: skip
STARTED = BroadcastStarted.of(SPEC, node="n1", at=1_700_000_000.25, what="Bão số 3")
WIRE = (
    b'17 {"type":"broadcast.started","sender":"n1","fence":null,"id":"bc-1",'
    b'"klass":"emergency","origin_zone":"p","target_zones":["c0","c1"],"target_endpoints":[],'
    b'"interrupt":null,"exclusive":false,"expires_at":1700000600.5,"resumable":false,'
    b'"live":false,"node":"n1","at":1700000000.25,"what":"B\xc3\xa3o s\xe1\xbb\x91 3"}'
)

EXAMPLES: list[Message] = [
    STARTED,
    ItemBoundary("bc-1", "n1"),
    BroadcastStopped("bc-1", "finished", "n2"),
    SpeakerCommand("c0-e1", "volume", 40),
    SpeakerCommand("c0-e1", "mute", True),
    SpeakerCommand("c0-e1", "stop"),
    Assignment(12, {"c0": "n1", "c1": "n2"}),
    NodeStatus("n2", 1.5, {"c0-e1": {"online": True, "lost": 3}}, {"bc-1": {"heard": 4}}),
]


def test_the_wire_form_of_a_lifecycle_event() -> None:
    assert bytes(Envelope(17, "n1", None, STARTED)) == WIRE
    env = Envelope.parse(WIRE)
    assert env == Envelope(17, "n1", None, STARTED)
    assert isinstance(env.message, BroadcastStarted)
    assert env.message.spec() == SPEC


def test_expiry_travels_as_unix_time_between_routers_on_different_clocks() -> None:
    """Each node's router runs on its own monotonic clock: the sender's expiry (its loop
    time 500.0, its wall clock 1,700,000,000 s ahead) is Unix time on the wire and becomes
    the receiver's own loop time (its wall clock 1,699,990,000 s ahead) for the same
    instant."""
    spec = BroadcastSpec("bc-2", Priority.EMERGENCY, frozenset({"c0"}), frozenset(),
                         expires_at=500.0)  # fmt: skip
    sent = BroadcastStarted.of(spec, node="n1", at=1.0, what="x", wall_offset=1_700_000_000.0)
    assert sent.expires_at == 1_700_000_500.0
    received = Envelope.parse(bytes(Envelope(3, "n1", None, sent))).message
    assert isinstance(received, BroadcastStarted)
    assert received.spec(1_699_990_000.0).expires_at == 10_500.0
    plain = BroadcastSpec("bc-3", Priority.EMERGENCY, frozenset({"c0"}), frozenset())
    no_expiry = BroadcastStarted.of(plain, node="n1", at=1.0, what="y", wall_offset=5.0)
    assert no_expiry.expires_at is None and no_expiry.spec(7.0).expires_at is None


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.TYPE)
def test_every_shape_round_trips(message: Message) -> None:
    env = Envelope(0, "n3", 5, message)
    assert Envelope.parse(bytes(env)) == env


@given(st.integers(0, 2**63), st.integers(1, 2**63), st.sampled_from(EXAMPLES))
def test_any_sequence_and_fence_round_trip(seq: int, fence: int, message: Message) -> None:
    env = Envelope(seq, "n1", fence, message)
    assert Envelope.parse(bytes(env)) == env


def _with(body: bytes) -> bytes:
    return b"0 " + body


def _msg(kind: str, sender: object = "n1", fence: object = None, **fields: object) -> bytes:
    obj = {"type": kind, "sender": sender, "fence": fence, **fields}
    return _with(json.dumps({k: v for k, v in obj.items() if v != "-"}).encode())


BOUNDARY, STOPPED, COMMAND = "broadcast.boundary", "broadcast.stopped", "speaker.command"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"type":"status"}', "control message must be '<seq> <json object>'"),
        (b"x {}", "control message must be '<seq> <json object>'"),
        (_with(b"{nope"), "control message is not JSON: Expecting property name enclosed in"),
        (_with(b"[1]"), "control message must be a JSON object"),
        (_msg("launch"), "unknown control message type 'launch'"),
        (_msg(BOUNDARY, sender="-", id="b", node="n"), f"{BOUNDARY}: missing field 'sender'"),
        (_msg(BOUNDARY, id="b"), f"{BOUNDARY}: missing field 'node'"),
        (_msg(BOUNDARY, id="b", node="n", x=1), f"{BOUNDARY}: unknown field 'x'"),
        (
            _msg(STOPPED, id="b", node="n", reason="bored"),
            f"{STOPPED}: field 'reason' must be one of stopped, finished, failed",
        ),
        (
            _msg(COMMAND, endpoint="e", command="volume", value=101),
            f"{COMMAND}: volume: field 'value' must be an integer 0-100",
        ),
        (
            _msg(COMMAND, endpoint="e", command="explode", value=None),
            f"{COMMAND}: field 'command' must be one of volume, mute, stop",
        ),
        (
            _msg("assignment", fence=0, version=1, placement={}),
            "field 'fence' must be an integer >= 1 or null, got 0",
        ),
        (
            _msg("assignment", fence=2, version="1", placement={}),
            "assignment: field 'version' must be an integer, got '1'",
        ),
        (
            _msg("assignment", fence=2, version=1, placement={"c0": 7}),
            "assignment: field 'placement': commune 'c0'",
        ),
        (
            _msg("status", sender="", node="n", at=1, endpoints={}, broadcasts={}),
            "field 'sender' must be a non-empty string, got ''",
        ),
        (
            _msg("status", node="n", at=float("nan"), endpoints={}, broadcasts={}),
            "status: field 'at' must be a finite number, got nan",
        ),
    ],
)
def test_bad_messages_are_refused_precisely(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Envelope.parse(data)
    assert str(info.value).startswith(message)


def test_a_started_event_is_held_to_the_routers_rules() -> None:
    body = WIRE.replace(b'"target_zones":["c0","c1"]', b'"target_zones":[]')
    with pytest.raises(ValueError, match=r"broadcast\.started: broadcast bc-1 has no targets"):
        Envelope.parse(body)
    with pytest.raises(ValueError, match="field 'klass' must be one of background, scheduled"):
        Envelope.parse(WIRE.replace(b'"emergency"', b'"urgent"'))
