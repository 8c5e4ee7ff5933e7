"""The `loa` command line: every subcommand has --help; `loa broadcast` drives a real server."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loa.__main__ import build_parser, main
from tests.conftest import ADMIN, tree_config

SUBCOMMANDS = ["serve", "broadcast", "speaker", "demo", "cluster-demo", "bench", "user"]


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(choices) == sorted(SUBCOMMANDS)
    for name in [*SUBCOMMANDS, "broadcast start", "broadcast stop", "broadcast list"]:
        with pytest.raises(SystemExit) as done:
            main([*name.split(), "--help"])
        assert done.value.code == 0
        assert "usage: loa " + name in capsys.readouterr().out


def test_python_dash_m_loa_works() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "loa", "--version"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0
    assert r.stdout.startswith("loa ")


def write_wav(path: Path) -> None:
    t = (
        np.arange(48000 * 40) / 48000
    )  # outlives the other CLI calls, each a fresh interpreter (seconds each on a loaded machine)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes((np.sin(2 * math.pi * 500 * t) * 9000).astype(np.int16).tobytes())


async def run_cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loa",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.e2e
async def test_broadcast_start_list_stop(relay_factory: Any, tmp_path: Path) -> None:
    relay = await relay_factory(tree_config(tmp_path))
    base = ["broadcast", "--server", relay.url, "--token", ADMIN]
    wav = tmp_path / "thong-bao.wav"
    write_wav(wav)

    rc, out, err = await run_cli(
        *base,
        "start",
        "--file",
        str(wav),
        "--zone",
        "c0",
        "--class",
        "scheduled",
        "--name",
        "Thông báo",
    )
    assert rc == 0, err
    file_id, state, heard, what = out.strip().split("\t")
    assert (state, heard, what) == ("playing", "2 endpoints", "Thông báo")

    rc, out, err = await run_cli(
        *base,
        "start",
        "--tone",
        "700",
        "--zone",
        "c1",
        "--class",
        "emergency",
        "--no-chime",
        "--expires-at",
        "2999-01-01T00:00:00",
    )
    assert rc == 0, err
    em_id = out.split("\t")[0]

    # A retry with the same key (a lost answer, a cron job run twice) starts nothing new.
    again = [*base, "start", "--tone", "500", "--zone", "c0", "--idempotency-key", "cron-0500"]
    rc, first, err = await run_cli(*again)
    assert rc == 0, err
    rc, second, err = await run_cli(*again)
    assert rc == 0, err
    assert first == second
    rc, _, _ = await run_cli(*base, "stop", first.split("\t")[0])
    assert rc == 0

    rc, out, _ = await run_cli(*base, "list")
    assert rc == 0
    listed = {line.split("\t")[0]: line.split("\t")[1] for line in out.strip().splitlines()}
    assert listed == {file_id: "scheduled", em_id: "emergency"}

    rc, out, _ = await run_cli(*base, "stop", em_id)
    assert rc == 0
    assert out.startswith(f"{em_id}\tstopped\theard by ")
    assert em_id not in relay.node.broadcasts
    assert file_id in relay.node.broadcasts


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token", "wrong", "list"], "401 unauthorized: invalid or revoked API token"),
        (["stop", "nope"], "404 not_found: broadcast nope is not active"),
        (["start", "--tone", "1000"], "give at least one --zone or --endpoint"),
        (["start", "--tone", "1000", "--zone", "atlantis"], "404 not_found: zone atlantis"),
        (["start", "--file", "/nonexistent.mp3", "--zone", "c0"], "cannot read /nonexistent.mp3"),
        (["start", "--tone", "1", "--zone", "c0", "--expires-at", "soon"], "not a time"),
    ],
)
async def test_broadcast_cli_errors_are_clear(
    relay_factory: Any, tmp_path: Path, argv: list[str], message: str
) -> None:
    relay = await relay_factory(tree_config(tmp_path))
    token = [] if "--token" in argv else ["--token", ADMIN]
    rc, _, err = await run_cli("broadcast", "--server", relay.url, *token, *argv)
    assert rc == 2
    assert message in err


@pytest.mark.e2e
async def test_broadcast_cli_unreachable_server() -> None:
    rc, _, err = await run_cli(
        "broadcast", "--server", "http://127.0.0.1:9", "--token", "x", "list"
    )
    assert rc == 2
    assert "cannot reach http://127.0.0.1:9" in err
