"""The media library on disk: uploads streamed to a temp file, checked by av, then renamed;
where each entry's audio file is (for the sources that play it), and removal.

A half-finished or killed upload leaves only a ``.part`` file, never a library entry. The
rows (who uploaded what, when) are the store's (``loa.store.media``); this owns the files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
from collections.abc import AsyncIterable
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np

from loa.config import Config
from loa.errors import MediaError, NotFound, TooLarge
from loa.streamer.duration import DurationCap, TooLong

log = logging.getLogger(__name__)
_MEDIA_ID = re.compile(r"^[a-f0-9]{16}$")
_SAFE_EXT = re.compile(r"^\.[a-z0-9]{1,5}$")
CHUNK = 256 * 1024


class MediaLibrary:
    """The files of the media library, in one directory (``DATA/media``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_config(cls, config: Config) -> MediaLibrary:
        return cls(config.data_dir / "media")

    def path(self, media_id: str) -> Path:
        """The audio file of an entry; NotFound for an unknown (or malformed) id."""
        if not _MEDIA_ID.match(media_id):
            raise NotFound(f"media {media_id!r} not found")
        meta = self.directory / f"{media_id}.json"
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise NotFound(f"media {media_id} not found") from None
        return self.directory / str(info["file"])

    async def add(
        self,
        chunks: AsyncIterable[bytes],
        name: str,
        limit: int,
        max_duration_s: float | None = None,
    ) -> dict[str, Any]:
        """Stream an upload into the library (see ``store_upload``); its info for the store."""
        return await store_upload(chunks, self.directory, name, limit, max_duration_s)

    async def remove(self, file: str) -> None:
        """Delete an entry's audio file and its metadata (off the loop)."""

        def unlink() -> None:
            audio = self.directory / file
            for path in (audio, audio.with_suffix(".json")):
                path.unlink(missing_ok=True)

        await asyncio.get_running_loop().run_in_executor(None, unlink)


def probe(path: Path, original_name: str, max_duration_s: float | None = None) -> dict[str, Any]:
    """Decode the whole file once (off the loop): duration and loudness, or a clear error.
    ``max_duration_s``: refuse longer media before decoding, or as decoding passes it."""
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
    chunks: AsyncIterable[bytes],
    media_dir: Path,
    name: str,
    limit: int,
    max_duration_s: float | None = None,
) -> dict[str, Any]:
    """Stream ``chunks`` to ``<id><ext>.part``, check it decodes (and is at most
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
            async for chunk in chunks:
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
