"""The media duration cap (web.max_media_duration_s): refused from the container's declared
duration before decoding, and while decoding a file that lies about its length or declares
none. Real ffmpeg-made Matroska/Opus files, one with its Duration element rewritten; then
uploads to a real server on loopback."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import av
import pytest

from loa.config import Config, with_changes
from loa.media import probe
from loa.streamer.duration import DurationCap, TooLong, declared_s, human
from loa.web.errors import http_status
from tests.conftest import AUTH

CAP_S = 3.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (7200, "2 h"),
        (5400, "1 h 30 min"),
        (90, "1 min 30 s"),
        (3661, "1 h 1 min 1 s"),
        (2.5, "2.5 s"),
    ],
)
def test_human(seconds: float, text: str) -> None:
    assert human(seconds) == text


def ffmpeg_opus(path: Path, seconds: float, *, seekable: bool = True) -> Path:
    """``seconds`` of a tone as Opus in Matroska; written through a pipe (``seekable=False``)
    the muxer cannot go back to fill in the Duration element."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("the ffmpeg binary is not installed; the README's test command installs it")
    args = [
        *(ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"),
        *("-i", f"sine=frequency=440:duration={seconds}", "-ac", "1"),
        *("-c:a", "libopus", "-b:a", "16k", "-f", "matroska"),
    ]
    if seekable:
        subprocess.run([*args, str(path)], check=True, timeout=30)
    else:
        with path.open("wb") as out:
            subprocess.run([*args, "pipe:1"], stdout=out, check=True, timeout=30)
    return path


def lie_about_duration(path: Path, out: Path, seconds: float) -> Path:
    """A copy whose Matroska Duration element (ID 0x4489, an 8-byte float of milliseconds)
    says ``seconds``; the audio stays as long as it was."""
    data = path.read_bytes()
    at = data.index(b"\x44\x89\x88")
    out.write_bytes(data[: at + 3] + struct.pack(">d", seconds * 1000) + data[at + 11 :])
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("duration")
    six = ffmpeg_opus(d / "six.mka", 6)
    return {
        "short": ffmpeg_opus(d / "short.mka", 2),
        "six": six,
        "liar": lie_about_duration(six, d / "liar.mka", 1.0),
        # Written to a pipe the muxer cannot seek back in: no Duration at all.
        "undeclared": ffmpeg_opus(d / "undeclared.mka", 6, seekable=False),
    }


def test_declared_durations(files: dict[str, Path]) -> None:
    for name, expected in (("short", 2.0), ("six", 6.0), ("liar", 1.0), ("undeclared", None)):
        with av.open(str(files[name])) as container:
            got = declared_s(container)
        assert got == (None if expected is None else pytest.approx(expected, abs=0.05)), name


def test_a_long_declared_duration_is_refused_before_decoding(files: dict[str, Path]) -> None:
    cap = DurationCap("six.mka", CAP_S, 48000)
    with av.open(str(files["six"])) as container, pytest.raises(TooLong) as info:
        cap.check_declared(container)
    assert cap.samples == 0  # nothing decoded
    assert info.value.message == (
        "six.mka lasts 6.008 s; the limit is 3 s (web.max_media_duration_s)"
    )
    assert info.value.fields == {"limit_s": 3.0, "duration_s": 6.008}
    assert (http_status(info.value), info.value.code) == (413, "too_long")


@pytest.mark.parametrize(("name", "said"), [("liar", "1 s"), ("undeclared", "no duration")])
def test_decoding_stops_at_the_cap(files: dict[str, Path], name: str, said: str) -> None:
    with pytest.raises(TooLong) as info:
        probe(files[name], f"{name}.mka", CAP_S)
    decoded = info.value.fields["decoded_s"]
    assert isinstance(decoded, float) and CAP_S + 1.0 < decoded < CAP_S + 1.2  # not 6 s
    assert info.value.message.startswith(f"{name}.mka goes on past 4")
    assert info.value.message.endswith(
        f"(it declares {said}); the limit is 3 s (web.max_media_duration_s)"
    )


def test_media_within_the_cap_pass(files: dict[str, Path]) -> None:
    assert probe(files["short"], "short.mka", CAP_S)["duration_s"] == pytest.approx(2.0, abs=0.03)
    assert probe(files["six"], "six.mka", None)["duration_s"] == pytest.approx(6.0, abs=0.03)
    assert probe(files["liar"], "liar.mka", 7200.0)["duration_s"] == pytest.approx(6.0, abs=0.03)


# -- uploads to a real server ----------------------------------------------------------------


async def upload(relay: Any, path: Path) -> tuple[int, Any]:
    data = await asyncio.to_thread(path.read_bytes)
    async with relay.http.post(
        f"{relay.url}/api/v1/media?filename={path.name}", data=data, headers=AUTH
    ) as resp:
        return resp.status, await resp.json()


async def test_uploads_over_the_cap_are_413_naming_it_and_leave_nothing(
    relay_factory: Any, config: Config, files: dict[str, Path]
) -> None:
    config = with_changes(config, web=with_changes(config.web, max_media_duration_s=CAP_S))
    relay = await relay_factory(config)
    status, body = await upload(relay, files["six"])
    assert status == 413 and body["error"]["code"] == "too_long"
    assert body["error"]["message"] == (
        "six.mka lasts 6.008 s; the limit is 3 s (web.max_media_duration_s)"
    )
    status, body = await upload(relay, files["liar"])
    assert status == 413 and body["error"]["limit_s"] == CAP_S
    assert "goes on past 4" in body["error"]["message"]
    media_dir = config.data_dir / "media"
    assert not media_dir.exists() or list(media_dir.iterdir()) == []
    assert (await relay.api("GET", "/media"))["media"] == []
    status, body = await upload(relay, files["short"])
    assert status == 201 and body["duration_s"] == pytest.approx(2.0, abs=0.03)
