"""The speaker protocol's control channel, both ends, without a socket: messages round-trip,
bad ones say what is wrong, the server's channel refuses what DESIGN.md says it refuses and
never raises on what a speaker sends, and the speaker's channel keeps the levels it is told."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.relay.core.channel import (
    Authenticate,
    ClientChannel,
    Close,
    DropAudio,
    Ignored,
    LevelsChanged,
    Phase,
    Refused,
    Send,
    ServerChannel,
    ServerError,
    StatusReported,
    TransportLost,
    TransportRequested,
    Welcomed,
)
from loa.relay.core.control import (
    CLOSE_AUTH,
    CLOSE_PROTOCOL,
    Hello,
    Mute,
    Playing,
    Refusal,
    Status,
    Stop,
    Transport,
    UnknownType,
    Volume,
    Welcome,
    decode,
    encode,
)

WELCOME = Welcome(
    session=bytes(range(8)),
    key=bytes(range(32)),
    endpoint="c0-e0",
    udp_host="10.0.0.1",
    udp_port=5004,
    ssrc=0xDEADBEEF,
    keepalive_s=10.0,
    volume=70,
    muted=False,
)


def texts(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Send)]


# -- messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Hello("tok", 1, "loa-speaker/0.1"),
        Hello("tok", 1, "loa-speaker/0.1", red=True),
        WELCOME,
        replace(WELCOME, red_payload_type=112),
        Refusal("bad_token", "unknown device token"),
        Status({"received": 10, "lost": 1, "jitter_ms": 1.5, "playing": None}),
        Transport("ws"),
        Transport("none", "udp timeout"),
        Volume(55),
        Mute(True),
        Stop(),
        Playing("em", "emergency", "Bão số 3", 100, True),
        Playing("em", "emergency", "Bão số 3", 100, True, 1796406917.166652),
        Playing(None, volume=80),
    ],
)
def test_messages_round_trip(message: Any) -> None:
    assert decode(encode(message)) == message


@pytest.mark.parametrize("since", [None, "1796406917", True, -1, 0, float("inf"), [], {}])
def test_a_playing_message_without_a_usable_switch_time_applies_from_its_arrival(
    since: Any,
) -> None:
    text = json.dumps({"type": "playing", "broadcast": "em", "volume": 100, "since": since})
    assert decode(text) == Playing("em", volume=100)
    assert "since" not in json.loads(encode(Playing("em", volume=100)))


def test_the_welcome_is_what_the_design_says_on_the_wire() -> None:
    assert json.loads(encode(WELCOME)) == {
        "type": "welcome",
        "session": "0001020304050607",
        "key": bytes(range(32)).hex(),
        "endpoint": "c0-e0",
        "udp_host": "10.0.0.1",
        "udp_port": 5004,
        "ssrc": 0xDEADBEEF,
        "payload_type": 111,
        "clock_rate": 48000,
        "keepalive_s": 10.0,
        "volume": 70,
        "muted": False,
        "playout_delay_ms": 300,
    }
    probing = json.loads(encode(replace(WELCOME, clock_probes=True)))
    assert probing["clock_probes"] is True
    assert decode(json.dumps(probing)) == replace(WELCOME, clock_probes=True)
    probing["clock_probes"] = "yes"  # only a JSON true says so
    assert decode(json.dumps(probing)) == WELCOME


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "a message is a JSON object, got list"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ('{"volume": 3}', "unknown message type None"),
        ('{"type": "volume", "volume": 101}', "volume: volume must be an integer 0..100, got 101"),
        ('{"type": "volume", "volume": true}', "volume: volume must be an integer 0..100"),
        ('{"type": "mute", "muted": "yes"}', "mute: muted must be true or false, got 'yes'"),
        ('{"type": "transport", "mode": "pigeon"}', "transport: mode must be one of"),
        ('{"type": "welcome", "session": "00"}', "malformed welcome: KeyError"),
        (
            json.dumps({**WELCOME.to_json(), "key": "00" * 16}),
            "malformed welcome: session must be 8 bytes and key 32",
        ),
        (
            json.dumps({**WELCOME.to_json(), "udp_port": 70000}),
            "malformed welcome: bad udp_port or keepalive_s",
        ),
        (
            json.dumps({**WELCOME.to_json(), "volume": 300}),
            "malformed welcome: volume 300 is not 0..100",
        ),
        (
            json.dumps({**WELCOME.to_json(), "red_payload_type": 111}),
            "malformed welcome: red_payload_type 111",  # Opus's own
        ),
        (
            json.dumps({**WELCOME.to_json(), "red_payload_type": 8}),
            "malformed welcome: red_payload_type 8",  # a static type (PCMA)
        ),
        (
            json.dumps({**WELCOME.to_json(), "red_payload_type": "x"}),
            "malformed welcome: ValueError",
        ),
    ],
)
def test_bad_messages_say_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace("[", r"\[")):
        decode(text)


def test_an_unknown_type_is_its_own_error() -> None:
    with pytest.raises(UnknownType) as info:
        decode('{"type": "hologram"}')
    assert info.value.kind == "hologram"


# -- the server's end ----------------------------------------------------------------------


def hello(**fields: Any) -> str:
    return json.dumps({"type": "hello", "token": "tok", "version": 1, **fields})


def test_a_good_hello_is_authenticated_then_welcomed() -> None:
    channel = ServerChannel(now=100.0)
    assert channel.deadline == 110.0
    actions = channel.on_text(hello(client="x"), now=100.5)
    assert actions == [Authenticate(Hello("tok", 1, "x"))]
    assert channel.deadline is None and channel.phase is Phase.AUTH
    assert texts(channel.accept(WELCOME)) == [WELCOME.to_json()]
    assert channel.phase is Phase.OPEN
    assert texts(channel.send(Volume(40))) == [{"type": "volume", "volume": 40}]


@pytest.mark.parametrize(
    ("text", "code", "message", "close"),
    [
        (hello(token=""), "bad_token", "unknown device token", CLOSE_AUTH),
        (hello(token=7), "bad_token", "unknown device token", CLOSE_AUTH),
        (hello(version=2), "unsupported_version", "protocol version 1 only", CLOSE_PROTOCOL),
        (hello(version="1"), "unsupported_version", "protocol version 1 only", CLOSE_PROTOCOL),
        ('{"type": "status"}', "bad_hello", 'expected {"type": "hello", ...}', CLOSE_PROTOCOL),
        ("[]", "bad_hello", 'expected {"type": "hello", ...}', CLOSE_PROTOCOL),
        ("hello?", "bad_hello", "hello is not valid JSON", CLOSE_PROTOCOL),
    ],
)
def test_bad_hellos_are_refused_and_closed(text: str, code: str, message: str, close: int) -> None:
    channel = ServerChannel(now=0.0)
    actions = channel.on_text(text, now=1.0)
    assert texts(actions) == [{"type": "error", "code": code, "message": message}]
    assert actions[-1] == Close(close, message)
    assert channel.refused == code and channel.phase is Phase.CLOSED
    assert channel.on_text(hello(), now=2.0) == []  # nothing more once refused
    assert channel.send(Volume(1)) == []


def test_an_unknown_token_is_refused_after_the_lookup() -> None:
    channel = ServerChannel(now=0.0)
    channel.on_text(hello(), now=0.1)
    actions = channel.refuse_token()
    assert texts(actions) == [
        {"type": "error", "code": "bad_token", "message": "unknown device token"}
    ]
    assert actions[-1] == Close(CLOSE_AUTH, "unknown device token")


def test_binary_before_the_hello_is_refused_and_after_it_ignored() -> None:
    channel = ServerChannel(now=0.0)
    assert texts(channel.on_binary(now=0.1))[0]["message"] == (
        "the first message must be a JSON hello"
    )
    opened = ServerChannel(now=0.0)
    opened.on_text(hello(), now=0.1)
    opened.accept(WELCOME)
    assert opened.on_binary(now=0.2) == []


def test_no_hello_in_time_is_refused_at_the_deadline_only() -> None:
    channel = ServerChannel(now=0.0, hello_timeout_s=10.0)
    assert channel.on_timeout(now=9.99) == []
    actions = channel.on_timeout(now=10.0)
    assert texts(actions) == [
        {"type": "error", "code": "bad_hello", "message": "no hello within 10 s"}
    ]
    assert channel.deadline is None


def test_accept_before_authenticate_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="accept\\(\\) while hello: only after Authenticate"):
        ServerChannel(now=0.0).accept(WELCOME)


def open_channel() -> ServerChannel:
    channel = ServerChannel(now=0.0)
    channel.on_text(hello(), now=0.0)
    channel.accept(WELCOME)
    return channel


def test_an_open_channel_reports_status_and_transport_and_ignores_the_rest() -> None:
    channel = open_channel()
    status = {"type": "status", "received": 5, "lost": 0, "secret": "dropped", "muted": False}
    assert channel.on_text(json.dumps(status), 1.0) == [
        StatusReported({"received": 5, "lost": 0, "muted": False})
    ]
    assert channel.on_text('{"type": "transport", "mode": "ws"}', 1.0) == [TransportRequested("ws")]
    assert channel.on_text('{"type": "transport", "mode": "udp"}', 1.0) == [
        TransportRequested("udp")
    ]
    ignored = [
        '{"type": "transport", "mode": "none"}',  # the server's to say, not the speaker's
        '{"type": "transport", "mode": "carrier pigeon"}',
        '{"type": "telemetry", "x": 1}',  # a newer speaker
        '{"type": "volume", "volume": 3}',  # a command, from the wrong end
        "{broken",
        "42",
    ]
    for text in ignored:
        (action,) = channel.on_text(text, 1.0)
        assert isinstance(action, Ignored), text


@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_nothing_a_speaker_sends_raises(text: str) -> None:
    for channel in (ServerChannel(now=0.0), open_channel()):
        channel.on_text(text, now=1.0)
        channel.on_binary(now=1.0)


# -- the speaker's end ---------------------------------------------------------------------


def test_the_speaker_says_hello_and_takes_its_levels_from_the_welcome() -> None:
    channel = ClientChannel("tok", "loa-speaker/0.1")
    assert json.loads(channel.hello()) == {
        "type": "hello",
        "token": "tok",
        "version": 1,
        "client": "loa-speaker/0.1",
    }
    assert channel.on_text(encode(WELCOME)) == [Welcomed(WELCOME)]
    assert (channel.volume, channel.muted, channel.effective_volume) == (70, False, 70)


def test_a_refusal_or_a_4401_close_before_the_welcome_is_refused() -> None:
    channel = ClientChannel("tok", "c")
    channel.hello()
    assert channel.on_text(encode(Refusal("bad_token", "unknown device token"))) == [
        Refused("bad_token", "unknown device token")
    ]
    channel.hello()
    assert channel.on_close(CLOSE_AUTH) == [Refused("bad_token", "the server closed with 4401")]
    channel.hello()
    assert channel.on_close(1006) == []


def test_anything_but_a_welcome_first_is_an_error() -> None:
    channel = ClientChannel("tok", "c")
    channel.hello()
    with pytest.raises(ValueError, match="expected a welcome, got 'volume'"):
        channel.on_text(encode(Volume(3)))


def welcomed() -> ClientChannel:
    channel = ClientChannel("tok", "c")
    channel.hello()
    channel.on_text(encode(WELCOME))
    return channel


def test_commands_set_the_levels_and_an_emergency_overrides_the_mute() -> None:
    channel = welcomed()
    assert channel.on_text(encode(Volume(30))) == [LevelsChanged("volume 30")]
    assert channel.on_text(encode(Mute(True))) == [LevelsChanged("muted")]
    assert (channel.effective_volume, channel.audible_muted) == (30, True)
    assert channel.on_text(encode(Playing("em", "emergency", "bão", 100, True, 1e9))) == [
        LevelsChanged("playing em", 1e9)
    ]
    assert (channel.broadcast, channel.effective_volume, channel.audible_muted) == (
        "em",
        100,
        False,
    )
    channel.on_text(encode(Playing(None, volume=30)))  # over: the pole's own levels again
    assert (channel.broadcast, channel.effective_volume, channel.audible_muted) == (
        None,
        30,
        True,
    )
    assert json.loads(channel.status(received=3)) == {
        "type": "status",
        "received": 3,
        "volume": 30,
        "muted": True,
        "playing": None,
    }


def test_other_commands_become_events_and_junk_is_ignored() -> None:
    channel = welcomed()
    assert channel.on_text(encode(Stop())) == [DropAudio()]
    assert channel.on_text(encode(Transport("none", "udp timeout"))) == [
        TransportLost("udp timeout")
    ]
    assert channel.on_text(encode(Refusal("x", "oops"))) == [ServerError("oops")]
    for text in ("{bad", '{"type": "volume", "volume": 900}', '{"type": "laser"}'):
        (event,) = channel.on_text(text)
        assert isinstance(event, Ignored), text
    assert channel.volume == 70  # an out-of-range volume changed nothing
    assert json.loads(channel.transport("ws")) == {"type": "transport", "mode": "ws"}


def test_red_is_said_only_by_those_who_take_it() -> None:
    """A speaker says it takes RFC 2198 RED in its hello (``"red": true``, anything else is
    no); the welcome names RED's payload type only to such a speaker, and an older
    speaker's hello and welcome read as before."""
    assert json.loads(encode(Hello("tok", 1, "x"))).get("red") is None
    assert json.loads(encode(Hello("tok", 1, "x", red=True)))["red"] is True
    assert decode(hello(red="yes")) == Hello("tok", 1)
    assert decode(hello(red=True)) == Hello("tok", 1, red=True)
    assert "red_payload_type" not in WELCOME.to_json()
    assert decode(encode(WELCOME)) == WELCOME and WELCOME.red_payload_type is None
    assert json.loads(encode(replace(WELCOME, red_payload_type=112)))["red_payload_type"] == 112
