"""SDP as text sections (RFC 8866), for what aiortc cannot say: rejecting an m= section.

An answer must carry one m= section per offered one, in order (RFC 3264 §6); a section the
answerer does not want (OBS's video, a browser's data channel) is *rejected* with port 0.
aiortc accepts every offered audio or video section (as ``recvonly``) and has no way to
reject one, so the web layer hands it an offer cut down to the section it wants
(``Sdp.keeping``) and puts the rejected sections back into aiortc's answer
(``Sdp.answer_rejecting``). Everything else about SDP is aiortc's (``aiortc.sdp``).

Lines are kept verbatim (``a=`` attributes we do not know pass through untouched); a bad
line raises ``ValueError`` naming its number."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Self

_LINE = re.compile(r"^[a-z]=")
_MLINE = re.compile(
    r"^m=(?P<kind>[a-z]+) (?P<port>[0-9]+)(?:/[0-9]+)? (?P<proto>[A-Za-z0-9/]+) (?P<fmt>.+)$"
)
# Per-section transport attributes of a BUNDLE group (RFC 8843 §7.1.3): a bundle-only section
# may carry none, relying on the group's tagged section, so they move with the section kept.
TRANSPORT = ("ice-ufrag", "ice-pwd", "ice-options", "fingerprint", "setup", "candidate")
GROUPS = ("BUNDLE", "LS")  # group semantics whose members are mids of this description


def attribute_of(line: str) -> tuple[str, str | None] | None:
    """``a=name:value`` → (name, value); ``a=flag`` → (flag, None); other lines → None."""
    if not line.startswith("a="):
        return None
    name, sep, value = line[2:].partition(":")
    return name, value if sep else None


@dataclass(frozen=True, slots=True)
class MediaSection:
    """One m= section: its m= line first, then its lines as they came."""

    lines: tuple[str, ...]
    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]

    @classmethod
    def parse(cls, lines: Sequence[str], first: int = 1) -> Self:
        """``lines`` starting with the m= line; ``first`` is its line number, for errors."""
        found = _MLINE.match(lines[0]) if lines else None
        if found is None:
            got = lines[0] if lines else ""
            raise ValueError(
                f"SDP line {first}: expected 'm=<media> <port> <proto> <fmt> ...', got {got!r}"
            )
        port = int(found["port"])
        if port > 65535:
            raise ValueError(f"SDP line {first}: port must be 0..65535, got {port}")
        return cls(tuple(lines), found["kind"], port, found["proto"], tuple(found["fmt"].split()))

    def attributes(self, name: str) -> list[str | None]:
        """Every value of ``a=name`` in the section (None for a flag without a value)."""
        return [a[1] for line in self.lines if (a := attribute_of(line)) and a[0] == name]

    @property
    def mid(self) -> str | None:
        mids = self.attributes("mid")
        return mids[0] if mids else None

    def transport(self) -> tuple[str, ...]:
        """The section's ICE credentials, DTLS fingerprints and setup role (no candidates)."""
        keep = ("ice-ufrag", "ice-pwd", "fingerprint", "setup")
        return tuple(ln for ln in self.lines if (a := attribute_of(ln)) and a[0] in keep)

    def rejected(self, transport: Sequence[str] = ()) -> MediaSection:
        """This section as an answer rejects it: port 0, the same media, proto and formats
        (RFC 3264 §6), its mid kept so the offerer can match it (RFC 8843 §7.3.3), no
        candidates. ``transport`` (the kept section's credentials, fingerprint and setup)
        goes in too: GStreamer's webrtcbin refuses an answer with any section, rejected or
        not, that lacks them."""
        lines = [f"m={self.kind} 0 {self.proto} {' '.join(self.formats)}", "c=IN IP4 0.0.0.0"]
        lines += transport
        if self.mid is not None:
            lines.append(f"a=mid:{self.mid}")
        lines.append("a=inactive")
        return MediaSection(tuple(lines), self.kind, 0, self.proto, self.formats)

    def with_transport_from(self, donors: Iterable[MediaSection]) -> MediaSection:
        """This section with the transport attributes of the first donor that has them, if
        it has none of its own (a bundle-only section whose group's tagged one goes)."""
        if any(self.attributes(name) for name in ("ice-ufrag", "candidate")):
            return self
        for donor in donors:
            moved = tuple(
                line
                for line in donor.lines[1:]
                if (a := attribute_of(line)) and a[0] in (*TRANSPORT, "end-of-candidates")
            )
            if moved:
                lines = tuple(ln for ln in self.lines if ln != "a=bundle-only") + moved
                return MediaSection(lines, self.kind, self.port, self.proto, self.formats)
        return self


@dataclass(frozen=True, slots=True)
class Sdp:
    """A session description: its session-level lines, then its m= sections."""

    session: tuple[str, ...]
    media: tuple[MediaSection, ...]

    @classmethod
    def parse(cls, text: str) -> Self:
        lines = text.replace("\r\n", "\n").split("\n")
        while lines and not lines[-1]:
            lines.pop()
        if not lines or lines[0] != "v=0":
            got = lines[0] if lines else ""
            raise ValueError(f"SDP line 1: a description starts with 'v=0', got {got!r}")
        starts = []
        for number, line in enumerate(lines, 1):
            if not _LINE.match(line):
                raise ValueError(f"SDP line {number}: expected '<type>=<value>', got {line!r}")
            if line.startswith("m="):
                starts.append(number - 1)
        bounds = [*starts, len(lines)]
        media = tuple(MediaSection.parse(lines[a:b], a + 1) for a, b in pairwise(bounds))
        session = tuple(lines[: starts[0]] if starts else lines)
        return cls(session, media)

    def __str__(self) -> str:
        lines = [*self.session, *(line for m in self.media for line in m.lines)]
        return "".join(f"{line}\r\n" for line in lines)

    def __bytes__(self) -> bytes:
        return str(self).encode()

    def keeping(self, kept: Sequence[int]) -> Sdp:
        """This offer with only the sections at ``kept``: the others' mids leave the
        BUNDLE and LS groups (a group left empty goes), and a kept bundle-only section
        takes the transport attributes of the dropped ones."""
        if not kept or any(not 0 <= i < len(self.media) for i in kept):
            raise ValueError(f"keep sections among 0..{len(self.media) - 1}, got {list(kept)}")
        dropped = [m for i, m in enumerate(self.media) if i not in kept]
        gone = {m.mid for m in dropped if m.mid is not None}
        session = tuple(
            line for line in (self._group_without(ln, gone) for ln in self.session) if line
        )
        media = tuple(self.media[i].with_transport_from(dropped) for i in sorted(set(kept)))
        return Sdp(session, media)

    @staticmethod
    def _group_without(line: str, mids: set[str]) -> str | None:
        attr = attribute_of(line)
        if attr is None or attr[0] != "group" or attr[1] is None:
            return line
        parts = attr[1].split()
        if not parts or parts[0] not in GROUPS:
            return line
        left = [m for m in parts[1:] if m not in mids]
        return f"a=group:{' '.join([parts[0], *left])}" if left else None

    def answer_rejecting(self, answer: Sdp, kept: Sequence[int]) -> Sdp:
        """The answer to this offer: ``answer`` (to ``self.keeping(kept)``) with every
        section not in ``kept`` put back in its place, rejected."""
        order = sorted(set(kept))
        if len(answer.media) != len(order):
            raise ValueError(
                f"the answer has {len(answer.media)} sections for the {len(order)} kept"
            )
        given = dict(zip(order, answer.media, strict=True))
        transport = answer.media[0].transport() if answer.media else ()
        media = tuple(given.get(i) or m.rejected(transport) for i, m in enumerate(self.media))
        return Sdp(answer.session, media)
