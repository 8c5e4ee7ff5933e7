"""Programmes: items, validation with exact errors, JSON, and the factory's playlist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loa.errors import BadRequest, NotFound
from loa.relay.core.priority import Priority
from loa.schedule.programme import (
    MediaItem,
    Programme,
    RelayItem,
    SilenceItem,
    SpeechItem,
)
from loa.streamer.factory import build_source
from loa.streamer.playlist import Playlist

MEDIA = "0123456789abcdef"
ITEMS: list[dict[str, Any]] = [
    {"type": "media", "id": MEDIA},
    {"type": "url", "url": "http://radio.example/vov1", "duration_s": 1800},
    {"type": "tts", "text": "Thông báo của Ủy ban xã", "voice": "vi", "rate_wpm": 150},
    {"type": "silence", "duration_s": 3},
]


def programme(items: list[Any] | None = None, cls: str = "scheduled") -> Programme:
    data = {"items": ITEMS if items is None else items, "targets": {"zones": ["c0"]}, "class": cls}
    return Programme.from_json(data)


def test_items_parse_in_order() -> None:
    p = programme()
    assert p.items == (
        MediaItem(MEDIA),
        RelayItem("http://radio.example/vov1", 1800.0),
        SpeechItem("Thông báo của Ủy ban xã", "vi", 150),
        SilenceItem(3.0),
    )
    assert p.priority is Priority.SCHEDULED
    assert p.target_zones == frozenset({"c0"})


def test_json_round_trip() -> None:
    p = programme(cls="background")
    assert p.to_json() == {
        "items": [
            {"type": "media", "id": MEDIA},
            {"type": "url", "url": "http://radio.example/vov1", "duration_s": 1800.0},
            {"type": "tts", "text": "Thông báo của Ủy ban xã", "voice": "vi", "rate_wpm": 150},
            {"type": "silence", "duration_s": 3.0},
        ],
        "targets": {"zones": ["c0"], "endpoints": []},
        "class": "background",
    }
    assert Programme.from_json(p.to_json()) == p


def test_source_description_is_the_factorys_playlist() -> None:
    assert programme().to_source_description() == {
        "type": "playlist",
        "items": [
            {"type": "media", "id": MEDIA},
            {"type": "url", "url": "http://radio.example/vov1", "duration_s": 1800.0},
            {"type": "tts", "text": "Thông báo của Ủy ban xã", "voice": "vi", "rate_wpm": 150},
            {"type": "silence", "duration_s": 3.0},
        ],
    }


def test_factory_builds_the_playlist() -> None:
    gaps = programme([{"type": "silence", "duration_s": 1}, {"type": "silence", "duration_s": 2}])

    def no_media(media_id: str) -> Path:
        raise AssertionError(f"no media expected, asked for {media_id}")

    source, what = build_source(gaps.to_source_description(), media_path=no_media)
    assert isinstance(source, Playlist)
    assert len(source.items) == 2 and source.resumable
    assert what == "silence + silence"


def test_resumable_unless_it_relays_a_radio_channel() -> None:
    assert not programme().resumable
    assert programme([{"type": "media", "id": MEDIA}]).resumable


def test_item_durations_use_the_library_and_estimate_speech() -> None:
    durations = programme().item_durations({MEDIA: 42.5})
    assert durations[0] == 42.5
    assert durations[1] == 1800.0
    assert durations[2] == pytest.approx(6 * 60 / 150 + 0.5)  # six words at 150 wpm + lead-in
    assert durations[3] == 3.0
    with pytest.raises(NotFound, match=r"^items\[0\] \(media\): media '0123456789abcdef' is not"):
        programme().item_durations({})


BAD_ITEMS = [
    ({"type": "silence", "duration_s": 0}, "items[0] (silence): duration_s must be a number of "
     "seconds in [0.02, 86400], got 0"),
    ({"type": "silence", "duration_s": -5}, "items[0] (silence): duration_s must be a number of "
     "seconds in [0.02, 86400], got -5"),
    ({"type": "silence", "duration_s": float("inf")}, "items[0] (silence): duration_s must be a "
     "number of seconds in [0.02, 86400], got inf"),
    ({"type": "silence", "duration_s": "10"}, "items[0] (silence): duration_s must be a number "
     "of seconds in [0.02, 86400], got '10'"),
    ({"type": "silence", "duration_s": True}, "items[0] (silence): duration_s must be a number "
     "of seconds in [0.02, 86400], got True"),
    ({"type": "silence"}, "items[0] (silence): duration_s must be a number of seconds in "
     "[0.02, 86400], got None"),
    ({"type": "url", "url": "http://r/x", "duration_s": 86401}, "items[0] (url): duration_s "
     "must be a number of seconds in [1, 86400], got 86401"),
    ({"type": "url", "url": "http://r/x", "duration_s": 0.5}, "items[0] (url): duration_s "
     "must be a number of seconds in [1, 86400], got 0.5"),
    ({"type": "url", "url": "http://r/x"}, "items[0] (url): a radio relay needs duration_s "
     "(a radio stream never ends)"),
    ({"type": "url", "url": "ftp://r/x", "duration_s": 60}, "items[0] (url): url must be an "
     "http, https, rtsp or rtsps URL, got 'ftp://r/x'"),
    ({"type": "media", "id": "../../etc/passwd"}, "items[0] (media): id must be a media library "
     "id (16 hex digits), got '../../etc/passwd'"),
    ({"type": "tts", "text": "  "}, "items[0] (tts): text must be a non-empty string, got '  '"),
    ({"type": "tts", "text": "x", "voice": "vi; rm"}, "items[0] (tts): voice must be an espeak "
     "voice name, got 'vi; rm'"),
    ({"type": "tts", "text": "x", "rate_wpm": 1000}, "items[0] (tts): rate_wpm must be a whole "
     "number in [80, 450], got 1000"),
    ({"type": "tone"}, "items[0]: type must be one of media, url, tts, silence, got 'tone'"),
    ({"type": "silence", "duration_s": 1, "loop": True}, "items[0] (silence): unknown key(s) "
     "loop; expected duration_s, type"),
    ("silence", "items[0] must be an object with a 'type', got 'silence'"),
]  # fmt: skip


@pytest.mark.parametrize(("item", "message"), BAD_ITEMS)
def test_bad_items_are_refused_exactly(item: Any, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        programme([item])
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"items": [], "targets": {"zones": ["c0"]}}, "a programme needs at least one item"),
        ({"items": [{"type": "silence", "duration_s": 1}] * 101, "targets": {"zones": ["c0"]}},
         "a programme has at most 100 items, got 101"),
        ({"items": "silence", "targets": {"zones": ["c0"]}}, "items must be a list, got 'silence'"),
        ({"items": [{"type": "silence", "duration_s": 1}], "targets": {}},
         "a programme needs targets: at least one zone or endpoint"),
        ({"items": [{"type": "silence", "duration_s": 1}], "targets": {"zones": "c0"}},
         "targets.zones must be a list of ids, got 'c0'"),
        ({"items": [{"type": "silence", "duration_s": 1}], "targets": {"zones": [""]}},
         "targets.zones must hold non-empty string ids, got ''"),
        ({"items": [{"type": "silence", "duration_s": 1}], "targets": {"zones": ["c0"]},
          "class": "emergency"}, "a schedule's class must be 'scheduled' or 'background', "
         "got 'emergency'"),
        ({"items": [{"type": "silence", "duration_s": 1}], "targets": ["c0"]},
         "targets must be an object with zones and endpoints lists, got ['c0']"),
    ],
)  # fmt: skip
def test_bad_programmes_are_refused_exactly(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        Programme.from_json(data)
    assert str(info.value) == message


def test_constructor_checks_class_too() -> None:
    with pytest.raises(BadRequest, match=r"class must be 'scheduled' or 'background', got 'live'"):
        Programme((SilenceItem(1.0),), frozenset({"c0"}), priority=Priority.LIVE)


def test_a_relay_item_carries_its_fallback_to_the_source_description() -> None:
    from loa.schedule.programme import parse_item

    item = parse_item(
        {"type": "url", "url": "http://radio.example/live", "duration_s": 600,
         "fallback": {"type": "silence"}},
        0,
    )  # fmt: skip
    assert item.describe()["fallback"] == {"type": "silence"}
    with pytest.raises(BadRequest, match=r"items\[0\] \(url\): fallback must be a media"):
        parse_item(
            {"type": "url", "url": "http://radio.example/live", "duration_s": 600,
             "fallback": {"type": "url"}},
            0,
        )  # fmt: skip
