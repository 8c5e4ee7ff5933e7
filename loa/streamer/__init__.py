"""Sources: anything that becomes 20 ms frames of 48 kHz mono int16 PCM."""

from loa.streamer.base import Frame, Source

__all__ = ["Frame", "Source"]
