"""The media library on disk: uploads streamed to a temp file, checked by av, then renamed.

A half-finished or killed upload leaves only a ``.part`` file, never a library entry."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import StreamReader

from loa.errors import LoaError, MediaError, NotFound

log = logging.getLogger(__name__)
_MEDIA_ID = re.compile(r"^[a-f0-9]{16}$")
_SAFE_EXT = re.compile(r"^\.[a-z0-9]{1,5}$")


class TooLarge(LoaError):
    code = "too_large"
    status = 413


def media_file(media_dir: Path, media_id: str) -> Path:
    if not _MEDIA_ID.match(media_id):
        raise NotFound(f"media {media_id!r} not found")
    meta = media_dir / f"{media_id}.json"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFound(f"media {media_id} not found") from None
    return media_dir / str(info["file"])


def probe(path: Path, original_name: str, max_duration_s: float | None = None) -> dict[str, Any]:
    """Decode the whole file once (off the loop): duration and loudness, or a clear error.
    ``max_duration_s``: refuse longer media before decoding, or as decoding passes it."""
    import av
    import numpy as np

    from loa.streamer.duration import DurationCap, TooLong  # edges: web.max_media_duration_s

    cap = DurationCap(original_name, max_duration_s, 48000) if max_duration_s else None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{original_name}: no audio stream")
            if cap is not None:
                cap.check_declared(container)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
            samples = 0
            energy = 0.0
            peak = 0
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1).astype(np.float64)
                    samples += pcm.size
                    if cap is not None:
                        cap.add(pcm.size)
                    energy += float(np.dot(pcm, pcm))
                    peak = max(peak, int(np.abs(pcm).max(initial=0.0)))
    except (MediaError, TooLong):
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError(f"{original_name}: not decodable audio ({exc})") from None
    if samples == 0:
        raise MediaError(f"{original_name}: contains no audio samples")
    rms = (energy / samples) ** 0.5 / 32768.0
    return {
        "duration_s": round(samples / 48000, 3),
        "rms_dbfs": round(20 * np.log10(rms), 2) if rms > 0 else -120.0,
        "peak_dbfs": round(20 * np.log10(peak / 32768.0), 2) if peak > 0 else -120.0,
    }


def _commit(part: Path, final: Path, info: dict[str, Any]) -> None:
    """Rename the checked upload into place, then write its metadata atomically."""
    os.replace(part, final)
    meta = final.with_suffix(".json.part")
    meta.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    os.replace(meta, final.with_suffix(".json"))


async def store_upload(
    content: StreamReader,
    media_dir: Path,
    name: str,
    limit: int,
    max_duration_s: float | None = None,
) -> dict[str, Any]:
    """Stream ``content`` to ``<id><ext>.part``, check it decodes (and is at most
    ``max_duration_s`` long), then commit it."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, partial(media_dir.mkdir, parents=True, exist_ok=True))
    media_id = secrets.token_hex(8)
    ext = Path(name).suffix.lower()
    ext = ext if _SAFE_EXT.match(ext) else ".bin"
    part = media_dir / f"{media_id}{ext}.part"
    size = 0
    try:
        fh = await loop.run_in_executor(None, part.open, "wb")
        try:
            async for chunk in content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload exceeds the {limit // 1024**2} MiB limit")
                await loop.run_in_executor(None, fh.write, chunk)
            await loop.run_in_executor(None, os.fsync, fh.fileno())
        finally:
            await loop.run_in_executor(None, fh.close)
        if size == 0:
            raise MediaError(f"{name}: the upload is empty")
        info = await loop.run_in_executor(None, probe, part, name, max_duration_s)
        final = media_dir / f"{media_id}{ext}"
        info.update({"id": media_id, "name": name, "file": final.name, "size": size})
        await loop.run_in_executor(None, _commit, part, final, info)
        return info
    except BaseException:
        await loop.run_in_executor(None, partial(part.unlink, missing_ok=True))
        raise
