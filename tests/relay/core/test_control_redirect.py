"""Cluster additions to the speaker protocol (issue 12 item 4), without a socket: the welcome
carries the ordered servers, the hello names the server just lost, and a ``redirect`` (before
the welcome or while connected) sends the speaker to its commune's node."""

from __future__ import annotations

import json

import pytest

from loa.relay.core.channel import (
    Authenticate,
    ClientChannel,
    Close,
    Phase,
    Redirected,
    Send,
    ServerChannel,
    Welcomed,
)
from loa.relay.core.control import CLOSE_MOVED, Hello, Redirect, Welcome, decode, encode

SERVERS = ("http://10.0.0.12:8080", "http://10.0.0.11:8080")
WELCOME = Welcome(bytes(8), bytes(32), "c0-e0", "10.0.0.12", 5004, 7, servers=SERVERS)


def test_messages_round_trip() -> None:
    for message in (WELCOME, Redirect(SERVERS, "moved"), Hello("tok", 1, "x", SERVERS[1])):
        assert decode(encode(message)) == message


def test_old_peers_are_unchanged() -> None:
    """A hello without ``lost`` and a welcome without ``servers`` read and write as before."""
    assert "lost" not in json.loads(encode(Hello("tok")))
    plain = Welcome(bytes(8), bytes(32), "e", "h", 5004, 7)
    assert "servers" not in json.loads(encode(plain))
    assert decode(encode(plain)) == plain and plain.servers == ()
    assert Hello.parse({"token": "t", "lost": 3}).lost == ""  # not a string: none


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ({"type": "redirect", "servers": []}, "redirect: servers must name at least one"),
        ({"type": "redirect"}, "redirect: servers must be a list of at most 64 URLs"),
        ({"type": "redirect", "servers": ["ftp://x"]}, "redirect: servers must be http(s) URLs"),
        ({"type": "redirect", "servers": ["http://x"] * 65}, "at most 64 URLs"),
    ],
)
def test_bad_redirects(obj: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        decode(json.dumps(obj))


def test_a_welcome_with_bad_servers_is_malformed() -> None:
    obj = json.loads(encode(WELCOME))
    obj["servers"] = "http://x"
    with pytest.raises(ValueError, match="malformed welcome: servers must be a list"):
        decode(json.dumps(obj))


def test_the_server_redirects_instead_of_welcoming() -> None:
    channel = ServerChannel(0.0)
    [auth] = channel.on_text(json.dumps({"type": "hello", "token": "t", "lost": SERVERS[1]}), 0)
    assert isinstance(auth, Authenticate) and auth.hello.lost == SERVERS[1]
    send, close = channel.redirect(SERVERS, "another node serves it")
    assert isinstance(send, Send) and isinstance(close, Close)
    assert json.loads(send.text) == {
        "type": "redirect", "servers": list(SERVERS), "reason": "another node serves it",
    }  # fmt: skip
    assert close.code == CLOSE_MOVED and channel.phase is Phase.CLOSED
    assert channel.redirect(SERVERS, "again") == []  # closed: nothing more


def test_the_speaker_follows_a_redirect_before_or_after_its_welcome() -> None:
    client = ClientChannel("t", "test")
    assert json.loads(client.hello(SERVERS[1]))["lost"] == SERVERS[1]
    assert client.on_text(encode(Redirect(SERVERS, "r"))) == [Redirected(SERVERS, "r")]
    client.hello()
    assert client.on_text(encode(WELCOME)) == [Welcomed(WELCOME)]
    assert client.welcome is not None and client.welcome.servers == SERVERS
    assert client.on_text(encode(Redirect(SERVERS[1:], "moved"))) == [
        Redirected(SERVERS[1:], "moved")
    ]
