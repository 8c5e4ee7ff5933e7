"""`loa speaker`: the reference receiver for a board on a pole, to a WAV file or a sound card."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import IO

import numpy as np

from loa.errors import ConfigError
from loa.speaker.client import AudioMeta, Speaker
from loa.speaker.clock import Clock, HostClock, SkewedClock
from loa.speaker.output import NullOutput, Output, SoundcardOutput, WavOutput

TOKEN_ENV = "LOA_SPEAKER_TOKEN"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("speaker", help="run a loudspeaker receiver", description=__doc__)
    p.add_argument(
        "--server", required=True, metavar="URL", help="relay base URL, e.g. https://host"
    )
    p.add_argument("--token", help=f"device token (or {TOKEN_ENV}, or --token-file)")
    p.add_argument("--token-file", type=Path, help="file holding the device token")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--wav", type=Path, metavar="PATH", help="write 48 kHz mono WAV here")
    out.add_argument(
        "--device",
        nargs="?",
        const="",
        metavar="NAME",
        help="play to a sound card (default device if NAME is omitted); needs loa[sound]",
    )
    p.add_argument("--ws", action="store_true", help="take audio over the WebSocket, never UDP")
    p.add_argument(
        "--status-interval", type=float, default=5.0, metavar="S", help="status every S seconds"
    )
    p.add_argument(
        "--no-sync",
        action="store_true",
        help="play as packets come, not in step with the other poles (capture time + D)",
    )
    test = p.add_argument_group("testing synchronised playout")
    test.add_argument(
        "--clock-offset-s",
        type=float,
        default=0.0,
        metavar="S",
        help="run on a clock S seconds off the host's (simulates a pole with a wrong clock)",
    )
    test.add_argument(
        "--clock-drift-ppm",
        type=float,
        default=0.0,
        metavar="PPM",
        help="… and running PPM parts per million fast (negative: slow), within ±1000",
    )
    test.add_argument(
        "--timestamps",
        type=Path,
        metavar="PATH",
        help="write one JSON line per frame played: its capture time (server Unix time) and "
        "when its first sample was heard (the host's monotonic clock)",
    )
    p.set_defaults(func=run)


def read_token(args: argparse.Namespace, env: dict[str, str] | None = None) -> str:
    """--token, else the environment, else --token-file; ConfigError if none gives one."""
    env = dict(os.environ) if env is None else env
    if args.token:
        return str(args.token)
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV]
    if args.token_file is not None:
        try:
            token = str(args.token_file.read_text(encoding="utf-8")).strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {args.token_file}: {exc.strerror}") from None
        if token:
            return token
        raise ConfigError(f"token file {args.token_file} is empty")
    raise ConfigError(f"a device token is needed: --token, {TOKEN_ENV} or --token-file")


def make_output(args: argparse.Namespace) -> Output:
    if args.wav is not None:
        return WavOutput(args.wav)
    if args.device is not None:
        return SoundcardOutput(args.device or None)
    return NullOutput()


class Timestamps:
    """``--timestamps``: a JSON line per frame played whole, with a known capture time."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.clock = clock
        try:
            self.file: IO[str] = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write timestamps to {path}: {exc.strerror}") from None

    def add(self, _pcm: np.ndarray, meta: AudioMeta) -> None:
        if meta.heard_at is None or meta.captured_at is None:
            return
        heard = self.clock.to_host(meta.heard_at)
        self.file.write(json.dumps({"captured": meta.captured_at, "heard": heard}) + "\n")

    def close(self) -> None:
        self.file.close()


def make_clock(args: argparse.Namespace) -> Clock:
    """The host's clock, or one off it by --clock-offset-s and --clock-drift-ppm."""
    if args.clock_offset_s == 0 and args.clock_drift_ppm == 0:
        return HostClock(time.monotonic)
    try:
        return SkewedClock(time.monotonic, args.clock_offset_s, args.clock_drift_ppm)
    except ValueError as exc:
        raise ConfigError(f"--clock-drift-ppm: {exc}") from None


def build(args: argparse.Namespace) -> tuple[Speaker, Timestamps | None]:
    if args.status_interval <= 0:
        raise ConfigError(f"--status-interval must be > 0, got {args.status_interval}")
    clock = make_clock(args)  # the event loop's clock is time.monotonic
    stamps = Timestamps(args.timestamps, clock) if args.timestamps is not None else None
    speaker = Speaker(
        args.server,
        read_token(args),
        make_output(args),
        status_interval_s=args.status_interval,
        force_ws=args.ws,
        clock=clock,
        sync=not args.no_sync,
        on_audio=stamps.add if stamps is not None else None,
    )
    return speaker, stamps


async def serve(speaker: Speaker) -> None:
    """Run until SIGINT or SIGTERM, which stop the speaker cleanly."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, speaker.stop)
    try:
        await speaker.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    speaker, stamps = build(args)
    print(f"loa: speaker for {speaker.url}", flush=True)
    try:
        asyncio.run(serve(speaker))
    finally:
        if stamps is not None:
            stamps.close()
    return 0
