"""SDP sections: an offer cut down to its audio, and the answer with the rest rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loa.codecs.sdp import MediaSection, Sdp

# An offer shaped like OBS Studio's WHIP output (libdatachannel): audio, then H.264 video,
# bundled, lip-sync grouped.
OBS = """v=0
o=rtc 4107523824 0 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=group:LS 0 1
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=ssrc:1 cname:obs
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=setup:actpass
a=ice-ufrag:abcd
a=ice-pwd:0123456789abcdef01234567
a=fingerprint:sha-256 AA:BB
a=candidate:1 1 UDP 2122317823 127.0.0.1 40000 typ host
a=end-of-candidates
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=rtcp-mux
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1
a=setup:actpass
a=ice-ufrag:abcd
a=ice-pwd:0123456789abcdef01234567
a=fingerprint:sha-256 AA:BB
"""

ANSWER = """v=0
o=- 1 1 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0
a=msid-semantic:WMS *
m=audio 50000 UDP/TLS/RTP/SAVPF 111
c=IN IP4 127.0.0.1
a=recvonly
a=mid:0
a=rtpmap:111 opus/48000/2
a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host
a=end-of-candidates
a=ice-ufrag:srvr
a=ice-pwd:serverpasswordserverpass
a=fingerprint:sha-256 CC:DD
a=setup:passive
"""


def test_parse_splits_sections_and_round_trips_with_crlf() -> None:
    sdp = Sdp.parse(OBS)
    assert [m.kind for m in sdp.media] == ["audio", "video"]
    assert [m.mid for m in sdp.media] == ["0", "1"]
    audio = sdp.media[0]
    assert (audio.port, audio.proto, audio.formats) == (9, "UDP/TLS/RTP/SAVPF", ("111",))
    assert audio.attributes("sendonly") == [None]
    assert audio.attributes("fmtp") == ["111 minptime=10;useinbandfec=1"]
    assert sdp.session[0] == "v=0" and len(sdp.session) == 7
    text = str(sdp)
    assert text == OBS.replace("\n", "\r\n")
    assert Sdp.parse(text) == sdp and bytes(sdp) == text.encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "SDP line 1: a description starts with 'v=0', got ''"),
        ("v=1\r\n", "SDP line 1: a description starts with 'v=0', got 'v=1'"),
        ("v=0\r\ns=-\r\nhello\r\n", "SDP line 3: expected '<type>=<value>', got 'hello'"),
        ("v=0\r\nm=audio\r\n", "SDP line 2: expected 'm=<media> <port> <proto> <fmt> ...'"),
        ("v=0\r\nm=audio x RTP/AVP 0\r\n", "SDP line 2: expected 'm=<media>"),
        ("v=0\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "SDP line 3: port must be 0..65535"),
        ("v=0\r\nA=x\r\n", "SDP line 2: expected '<type>=<value>', got 'A=x'"),
    ],
)
def test_bad_descriptions_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        Sdp.parse(text)


def test_a_description_without_media_has_no_sections() -> None:
    assert Sdp.parse("v=0") == Sdp(("v=0",), ())
    assert Sdp.parse("v=0\r\ns=-\r\n") == Sdp(("v=0", "s=-"), ())


def test_keeping_the_audio_drops_the_video_from_the_groups() -> None:
    offer = Sdp.parse(OBS)
    kept = offer.keeping([0])
    assert [m.kind for m in kept.media] == ["audio"]
    assert kept.media[0] == offer.media[0]  # untouched: it has its own transport
    assert "a=group:BUNDLE 0" in kept.session and "a=group:LS 0" in kept.session
    assert kept.session[:4] == offer.session[:4]
    only_video = offer.keeping([1])
    assert "a=group:BUNDLE 1" in only_video.session


def test_a_group_left_empty_goes_and_other_groups_stay() -> None:
    text = OBS.replace("a=group:LS 0 1", "a=group:LS 1\na=group:FID 1 2")
    kept = Sdp.parse(text).keeping([0])
    assert not any(line.startswith("a=group:LS") for line in kept.session)
    assert "a=group:FID 1 2" in kept.session  # not a group of mids we judge
    broken = Sdp.parse(text.replace("a=group:FID 1 2", "a=group:")).keeping([0])
    assert "a=group:" in broken.session  # passed through as it came


def test_a_bundle_only_section_takes_the_dropped_sections_transport() -> None:
    # A browser's max-bundle offer: video first (tagged, with the transport), then audio
    # bundle-only with port 0 and no ICE of its own.
    video = Sdp.parse(OBS).media[1].lines
    candidates = ("a=candidate:1 1 UDP 2122317823 127.0.0.1 40000 typ host", "a=end-of-candidates")
    audio = [
        ln
        for ln in Sdp.parse(OBS).media[0].lines
        if not ln.startswith(("a=ice-", "a=fingerprint", "a=setup", "a=candidate", "a=end-of"))
    ]
    audio[0] = "m=audio 0 UDP/TLS/RTP/SAVPF 111"
    audio.append("a=bundle-only")
    text = "\r\n".join(["v=0", "s=-", "t=0 0", "a=group:BUNDLE 1 0", *video, *candidates, *audio])
    offer = Sdp.parse(text)
    kept = offer.keeping([1])
    (section,) = kept.media
    assert section.kind == "audio" and section.mid == "0"
    assert section.attributes("ice-ufrag") == ["abcd"]
    assert section.attributes("fingerprint") == ["sha-256 AA:BB"]
    assert section.attributes("setup") == ["actpass"]
    assert len(section.attributes("candidate")) == 1
    assert section.attributes("bundle-only") == []
    assert "a=group:BUNDLE 0" in kept.session


def test_keeping_refuses_sections_that_are_not_there() -> None:
    offer = Sdp.parse(OBS)
    with pytest.raises(ValueError, match=r"keep sections among 0\.\.1, got \[2\]"):
        offer.keeping([2])
    with pytest.raises(ValueError, match=r"got \[\]"):
        offer.keeping([])


def test_the_answer_puts_the_rejected_video_back_in_its_place() -> None:
    offer = Sdp.parse(OBS)
    answer = offer.answer_rejecting(Sdp.parse(ANSWER), [0])
    audio, video = answer.media
    assert audio == Sdp.parse(ANSWER).media[0]
    assert video.lines == (
        "m=video 0 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:srvr",
        "a=ice-pwd:serverpasswordserverpass",
        "a=fingerprint:sha-256 CC:DD",
        "a=setup:passive",
        "a=mid:1",
        "a=inactive",
    )
    assert video.port == 0 and video.attributes("candidate") == []
    assert answer.session == Sdp.parse(ANSWER).session  # the BUNDLE group: audio only
    assert "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n" in str(answer)


def test_the_answer_keeps_the_offers_order_when_video_comes_first() -> None:
    offer = Sdp.parse(OBS)
    swapped = Sdp(offer.session, (offer.media[1], offer.media[0]))
    answer = swapped.answer_rejecting(Sdp.parse(ANSWER), [1])
    assert [(m.kind, m.port) for m in answer.media] == [("video", 0), ("audio", 50000)]


def test_the_answer_must_have_one_section_per_kept_one() -> None:
    offer = Sdp.parse(OBS)
    with pytest.raises(ValueError, match="the answer has 1 sections for the 2 kept"):
        offer.answer_rejecting(Sdp.parse(ANSWER), [0, 1])


def test_a_section_without_mid_is_rejected_without_one() -> None:
    section = MediaSection.parse(["m=application 9 UDP/DTLS/SCTP webrtc-datachannel"])
    rejected = section.rejected()
    assert rejected.lines == (
        "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=inactive",
    )
    assert rejected.formats == ("webrtc-datachannel",)


LINES = st.one_of(
    st.sampled_from(["v=0", "s=-", "a=group:BUNDLE 0 1", "a=mid:0", "a=group:", "m=audio"]),
    st.sampled_from(["m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 0 RTP/AVP 96", "a=setup:x"]),
    st.text(max_size=20),
)
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(LINES, max_size=12).map(lambda lines: "\r\n".join(["v=0", *lines])),
)


@given(TEXTS)
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        sdp = Sdp.parse(text)
    except ValueError as exc:
        error = str(exc)
    else:
        assert Sdp.parse(str(sdp)) == sdp
        return
    assert error.startswith("SDP line ")
