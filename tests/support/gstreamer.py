"""Drive ``tests/support/gst_whip.py`` (GStreamer's webrtcbin as a WHIP publisher) from a
test: it runs under the system python3, which has Debian's python3-gi; the virtualenv
does not. Its stdout is one JSON event per line; closing its stdin ends the publication."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

HELPER = Path(__file__).with_name("gst_whip.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
    "gi.require_version('GstSdp', '1.0'); gi.require_version('Nice', '0.1');"
    "from gi.repository import Gst; Gst.init(None);"
    "missing = [e for e in ('webrtcbin', 'opusenc', 'rtpopuspay', 'nicesrc', 'dtlssrtpenc',"
    " 'vp8enc', 'rtpvp8pay', 'audiotestsrc', 'videotestsrc') if not Gst.ElementFactory.find(e)];"
    "print(' '.join(missing))"
)


def need_gstreamer() -> str:
    """The system python3 with gi and the webrtcbin elements, or the test fails saying
    what scripts/test installs."""
    how = "scripts/test installs python3-gi and GStreamer's -base/-good/-bad plugins and libnice"
    try:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        pytest.fail(f"{SYSTEM_PYTHON} is missing; {how}")
    if probe.returncode != 0:
        pytest.fail(f"GStreamer through python3-gi does not load ({probe.stderr[-500:]}); {how}")
    if probe.stdout.strip():
        pytest.fail(f"GStreamer elements missing: {probe.stdout.strip()}; {how}")
    return SYSTEM_PYTHON


class GstPublisher:
    """One gst_whip.py process; ``events`` collects what it printed."""

    def __init__(self, url: str, *, token: str, freq: float = 440.0, video: bool = False):
        self.args = [str(HELPER), url, "--token", token, "--freq", str(freq)]
        if video:
            self.args.append("--video")
        self.events: list[dict[str, Any]] = []
        self.stderr = bytearray()
        self.proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._seen = asyncio.Event()

    async def start(self) -> None:
        env = {**os.environ, "GST_DEBUG": "dtls*:2,webrtc*:2"}  # errors and warnings only
        self.proc = await asyncio.create_subprocess_exec(
            need_gstreamer(),
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._readers = [
            asyncio.create_task(self._read_events()),
            asyncio.create_task(self._read_log()),
        ]

    async def _read_events(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))
            self._seen.set()
        self._seen.set()

    async def _read_log(self) -> None:  # drained, so the pipe never fills and blocks it
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    def event(self, name: str, **match: Any) -> dict[str, Any] | None:
        for event in self.events:
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                return event
        return None

    async def wait(self, name: str, timeout: float = 15, **match: Any) -> dict[str, Any]:
        """The first event ``name`` (with fields ``match``); fails on timeout or on an error
        event, showing everything the publisher said."""
        async with asyncio.timeout(timeout):
            while (found := self.event(name, **match)) is None:
                if (error := self.event("error")) is not None and name != "error":
                    pytest.fail(f"GStreamer: {error['message']}\n{self.transcript()}")
                if not self._readers or self._readers[0].done():  # its stdout ended
                    pytest.fail(f"the publisher exited before {name}\n{self.transcript()}")
                self._seen.clear()
                await self._seen.wait()
        return found

    def transcript(self) -> str:
        log = self.stderr.decode(errors="replace")[-3000:]
        return "\n".join(map(json.dumps, self.events)) + "\n" + log

    async def close(self) -> int:
        """Close stdin (the publisher DELETEs its session and stops); its exit code."""
        proc = self.proc
        if proc is None:
            return 0
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            async with asyncio.timeout(15):
                code = await proc.wait()
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._readers)
        return code
