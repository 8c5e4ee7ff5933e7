"""What a pole's board installs: `pip install loa` brings what `loa speaker` needs and no
more, `loa speaker` runs without any of the server's dependencies, and bench/ is not an
installed package. The blocking is done by tests/support/without_server.py, which reads the
``server`` extra from pyproject.toml."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import signal
import subprocess
import sys
import tomllib
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.codecs.pcm import dominant_frequency
from tests.conftest import tree_config
from tests.relay.fleet import wait_for
from tests.relay.relayfix import tone

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_SERVER = ROOT / "tests" / "support" / "without_server.py"
SPEAKER_PATH = ("loa.__main__", "loa.cli.speaker", "loa.speaker.client", "loa.speaker.output")


def without_server(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WITHOUT_SERVER), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def tried(stderr: str) -> list[str]:
    """The blocked modules something tried to import (the last line of stderr)."""
    return list(json.loads(stderr.strip().splitlines()[-1]))


def test_the_base_install_is_what_the_speaker_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = sorted(d.split(">")[0].split("=")[0] for d in project["dependencies"])
    assert names == ["aiohttp", "numpy", "opuslib"]
    assert "sounddevice" in str(project["optional-dependencies"]["sound"])


def test_bench_is_not_installed_as_a_top_level_package() -> None:
    top_level = importlib.metadata.distribution("loa").read_text("top_level.txt") or ""
    assert top_level.split() == ["loa"]


def test_the_speakers_code_imports_nothing_of_the_server() -> None:
    r = without_server("--import", *SPEAKER_PATH)
    assert r.returncode == 0, r.stderr
    assert tried(r.stderr) == []


def test_the_blocker_blocks() -> None:
    r = without_server("--import", "loa.streamer.file")  # decodes with av: a server module
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr
    assert tried(r.stderr) == ["av"]


@pytest.mark.slow
def test_a_server_command_without_the_server_says_what_to_install() -> None:
    r = without_server("serve", "--port", "1")
    assert r.returncode == 2
    assert "`loa serve` needs the server's dependencies" in r.stderr
    assert "pip install 'loa[server]'" in r.stderr
    speaker_help = without_server("speaker", "--help")
    assert speaker_help.returncode == 0 and "usage: loa speaker" in speaker_help.stdout


@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_loa_speaker_plays_without_the_server_dependencies(
    relay_factory: Any, tmp_path: Path
) -> None:
    relay = await relay_factory(tree_config(tmp_path))
    out = tmp_path / "pole.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WITHOUT_SERVER), "speaker", "--server", relay.url,
        "--token", "tok-c0-e0", "--wav", str(out), "--status-interval", "0.5",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        ep = relay.node.endpoint("c0-e0")
        await wait_for(lambda: ep.session is not None and ep.status, 20, "the speaker's status")
        await relay.api("POST", "/broadcasts", tone(880, ["c0"], "live"), 201)
        await asyncio.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()[-2000:]  # (the server's commands were refused)
    with wave.open(str(out)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert dominant_frequency(pcm[-24000:]) == pytest.approx(880, rel=0.01)
