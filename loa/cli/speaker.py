"""`loa speaker`: the reference receiver for a board on a pole, to a WAV file or a sound card."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from loa.errors import ConfigError
from loa.speaker.client import Speaker
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


def build(args: argparse.Namespace) -> Speaker:
    if args.status_interval <= 0:
        raise ConfigError(f"--status-interval must be > 0, got {args.status_interval}")
    return Speaker(
        args.server,
        read_token(args),
        make_output(args),
        status_interval_s=args.status_interval,
        force_ws=args.ws,
    )


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
    speaker = build(args)
    print(f"loa: speaker for {speaker.url}", flush=True)
    asyncio.run(serve(speaker))
    return 0
