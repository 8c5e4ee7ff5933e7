"""The decode loop of the network sources (radio relay URLs, Icecast pushes): one audio
stream of an av container as exact 20 ms frames of 48 kHz mono s16.

Runs in the source's reader thread. A damaged packet (a bit error on the air, a cut-in) is
skipped as a player would; only a stream that stops decoding altogether (``MAX_BAD_PACKETS``
in a row) raises ``SourceError``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from loa.codecs import SAMPLE_RATE
from loa.codecs.pcm import Framer, Int16Array
from loa.errors import SourceError

MAX_BAD_PACKETS = 50  # undecodable packets in a row that mean the stream is not audio


def decode_frames(container: Any, stream: Any) -> Iterator[Int16Array]:
    """Demux ``stream`` from ``container``, decode, resample and cut; yields each frame as
    soon as it is complete. A trailing partial frame is dropped (a live stream has none)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    framer = Framer()
    bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            bad += 1
            if bad >= MAX_BAD_PACKETS:
                raise SourceError(f"{bad} undecodable packets in a row: {exc}") from exc
            continue
        bad = 0
        for frame in frames:
            for out in resampler.resample(frame):
                # s16 mono: one plane of int16 (the astype checks it, and copies nothing)
                yield from framer.push(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
