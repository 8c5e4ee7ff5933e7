"""CAP 1.2 (OASIS Common Alerting Protocol) alerts: safe, strict parsing into frozen dataclasses.

``parse_alert(data)`` takes the bytes of one ``<alert>`` document and returns an ``Alert``, or
raises ``CapError`` with a message that names what is wrong and where:

- the size is checked before any parsing (``max_bytes``, 256 KiB by default);
- the XML is parsed by defusedxml with DTDs forbidden, so a DOCTYPE, entity declarations,
  external entities (XXE) and entity-expansion bombs are refused before any entity is read or
  expanded (the stdlib parser would expand internal entities); a CAP alert never needs a DTD;
- malformed XML names the line and column; missing or repeated elements name their path
  (``alert/info[1]/area[2]/areaDesc``, indexes from 1); enumerations name the value and the
  allowed set; times must carry a timezone (CAP's ``2025-09-12T14:00:00+07:00``).

CAP 1.1 documents (namespace ``urn:oasis:names:tc:emergency:cap:1.1``) are accepted and read
with the 1.2 rules, except that ``resource/mimeType`` is optional there as 1.1 has it;
``Alert.cap_version`` says which one arrived. Two leniencies towards real senders, both
unambiguous: a ``Z`` designator is read as UTC (CAP 1.2 asks for ``-00:00``) and fractional
seconds are kept. Elements of other namespaces (extensions) are ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import NamedTuple, TypeVar
from xml.etree.ElementTree import Element, ParseError
from xml.parsers.expat import ErrorString

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException, DTDForbidden

from loa.errors import LoaError

CAP_NS = {
    "urn:oasis:names:tc:emergency:cap:1.2": "1.2",
    "urn:oasis:names:tc:emergency:cap:1.1": "1.1",
}
MAX_BYTES = 256 * 1024


class CapError(LoaError, ValueError):
    """A CAP document that cannot be accepted; the message says what and where."""

    code = "bad_cap"


class Status(StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(StrEnum):
    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Category(StrEnum):
    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class Urgency(StrEnum):
    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(StrEnum):
    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(StrEnum):
    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


class Reference(NamedTuple):
    """An earlier alert, as CAP identifies it: (sender, identifier, sent)."""

    sender: str
    identifier: str
    sent: datetime


class Geocode(NamedTuple):
    value_name: str
    value: str


@dataclass(frozen=True, slots=True)
class Resource:
    """A file that goes with an info block: by ``uri``, inline (``deref``, decoded), or both."""

    resource_desc: str
    mime_type: str | None
    size: int | None = None
    uri: str | None = None
    deref: bytes | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Area:
    """Where an info block applies; polygons and circles are kept as CAP text."""

    area_desc: str
    geocodes: tuple[Geocode, ...] = ()
    polygons: tuple[str, ...] = ()
    circles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Info:
    """One ``<info>`` block: the event, how urgent, severe and certain, its text and areas."""

    language: str
    categories: tuple[Category, ...]
    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    resources: tuple[Resource, ...] = ()
    areas: tuple[Area, ...] = ()
    # <parameter> pairs (valueName, value) in document order; loa reads REPEAT_PARAMETER.
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """One CAP ``<alert>`` message."""

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: Scope
    references: tuple[Reference, ...] = ()
    infos: tuple[Info, ...] = ()
    note: str | None = None
    cap_version: str = "1.2"

    @property
    def reference(self) -> Reference:
        """How a later Update or Cancel names this alert."""
        return Reference(self.sender, self.identifier, self.sent)


def parse_alert(data: bytes, *, max_bytes: int = MAX_BYTES) -> Alert:
    """Parse one CAP 1.2 (or 1.1) alert; raise ``CapError`` on anything unacceptable."""
    if len(data) > max_bytes:
        raise CapError(f"CAP document is {len(data)} bytes; the limit is {max_bytes}")
    root = _parse_xml(bytes(data))
    ns, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    expected = " or ".join(CAP_NS)
    if local != "alert" or ns not in CAP_NS:
        found = f"<{local}> in namespace {ns!r}" if ns else f"<{local}> with no namespace"
        raise CapError(f"root element is {found}; expected <alert> in namespace {expected}")
    return _Reader(ns).alert(root)


def _parse_xml(data: bytes) -> Element:
    try:
        root: Element = SafeET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DTDForbidden as e:
        where = f" (system id {e.sysid!r})" if e.sysid else ""
        raise CapError(
            f"CAP document has a DOCTYPE {e.name!r}{where}; "
            "DTDs and entities are forbidden (a CAP alert never needs them)"
        ) from None
    except DefusedXmlException as e:  # entities need a DTD, so this is defence in depth
        raise CapError(f"CAP document uses a forbidden XML feature: {e}") from None
    except ParseError as e:
        line, column = e.position[0], e.position[1] + 1  # expat counts columns from 0
        raise CapError(
            f"malformed XML at line {line}, column {column}: {ErrorString(e.code)}",
            line=line,
            column=column,
        ) from None
    except LookupError as e:  # an unknown encoding in the XML declaration
        raise CapError(f"malformed XML: {e}") from None
    return root


_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_E = TypeVar("_E", bound=StrEnum)


def parse_time(text: str, path: str) -> datetime:
    """A CAP date-time (with its timezone) as an aware datetime; ``path`` is for the error."""
    m = _TIME.fullmatch(text)
    if m is None:
        raise CapError(
            f"{path}: {text!r} is not a CAP date-time like 2025-09-12T14:00:00+07:00", path=path
        )
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    if zone is None:
        raise CapError(
            f"{path}: {text!r} has no timezone; CAP times carry one, "
            "like 2025-09-12T14:00:00+07:00",
            path=path,
        )
    offset = timedelta(0)
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise CapError(f"{path}: {text!r} has an impossible timezone {zone}", path=path)
        offset = (-1 if zone[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes)
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        numbers = (int(year), int(month), int(day), int(hour), int(minute), int(second))
        return datetime(*numbers, micro, tzinfo=timezone(offset))
    except ValueError as e:
        raise CapError(f"{path}: {text!r} is not a valid date-time: {e}", path=path) from None


class _Reader:
    """Walks a parsed ``<alert>`` in one CAP namespace, keeping element paths for errors."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.version = CAP_NS[ns]

    def _all(self, el: Element, name: str) -> list[Element]:
        return el.findall(f"{{{self.ns}}}{name}")

    def _text(self, el: Element, path: str) -> str:
        if len(el):
            raise CapError(f"{path} must hold text, not elements", path=path)
        text = (el.text or "").strip()
        if not text:
            raise CapError(f"{path} is empty", path=path)
        return text

    def opt(self, el: Element, path: str, name: str) -> str | None:
        found = self._all(el, name)
        if len(found) > 1:
            raise CapError(
                f"{path}/{name} appears {len(found)} times; CAP allows one", path=f"{path}/{name}"
            )
        return self._text(found[0], f"{path}/{name}") if found else None

    def req(self, el: Element, path: str, name: str) -> str:
        value = self.opt(el, path, name)
        if value is None:
            raise CapError(f"missing required element {path}/{name}", path=f"{path}/{name}")
        return value

    def many(self, el: Element, path: str, name: str) -> tuple[str, ...]:
        return tuple(
            self._text(child, f"{path}/{name}[{i}]")
            for i, child in enumerate(self._all(el, name), 1)
        )

    def enum(self, kind: type[_E], value: str, path: str) -> _E:
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(kind)
            raise CapError(f"{path}: {value!r} is not one of {allowed}", path=path) from None

    def time(self, el: Element, path: str, name: str) -> datetime | None:
        value = self.opt(el, path, name)
        return None if value is None else parse_time(value, f"{path}/{name}")

    def alert(self, el: Element) -> Alert:
        p = "alert"
        identifier = self._token(self.req(el, p, "identifier"), f"{p}/identifier")
        sender = self._token(self.req(el, p, "sender"), f"{p}/sender")
        sent = parse_time(self.req(el, p, "sent"), f"{p}/sent")
        status = self.enum(Status, self.req(el, p, "status"), f"{p}/status")
        msg_type = self.enum(MsgType, self.req(el, p, "msgType"), f"{p}/msgType")
        scope = self.enum(Scope, self.req(el, p, "scope"), f"{p}/scope")
        references = self._references(self.opt(el, p, "references"))
        infos = tuple(
            self.info(child, f"{p}/info[{i}]") for i, child in enumerate(self._all(el, "info"), 1)
        )
        note = self.opt(el, p, "note")
        return Alert(
            identifier, sender, sent, status, msg_type, scope, references, infos, note, self.version
        )

    @staticmethod
    def _token(value: str, path: str) -> str:
        # CAP forbids these in identifiers and senders: references separate by space and comma.
        if any(c.isspace() or c in ",<&" for c in value):
            raise CapError(
                f"{path}: {value!r} contains a space, comma, '<' or '&', which CAP forbids",
                path=path,
            )
        return value

    def _references(self, text: str | None) -> tuple[Reference, ...]:
        path = "alert/references"
        refs = []
        for entry in (text or "").split():
            parts = entry.split(",")
            if len(parts) != 3 or not all(parts):
                raise CapError(f"{path}: {entry!r} is not sender,identifier,sent", path=path)
            refs.append(Reference(parts[0], parts[1], parse_time(parts[2], path)))
        return tuple(refs)

    def info(self, el: Element, p: str) -> Info:
        categories = tuple(
            self.enum(Category, c, f"{p}/category[{i}]")
            for i, c in enumerate(self.many(el, p, "category"), 1)
        )
        if not categories:
            raise CapError(f"missing required element {p}/category", path=f"{p}/category")
        return Info(
            language=self.opt(el, p, "language") or "en-US",
            categories=categories,
            event=self.req(el, p, "event"),
            urgency=self.enum(Urgency, self.req(el, p, "urgency"), f"{p}/urgency"),
            severity=self.enum(Severity, self.req(el, p, "severity"), f"{p}/severity"),
            certainty=self.enum(Certainty, self.req(el, p, "certainty"), f"{p}/certainty"),
            effective=self.time(el, p, "effective"),
            onset=self.time(el, p, "onset"),
            expires=self.time(el, p, "expires"),
            sender_name=self.opt(el, p, "senderName"),
            headline=self.opt(el, p, "headline"),
            description=self.opt(el, p, "description"),
            instruction=self.opt(el, p, "instruction"),
            resources=tuple(
                self.resource(r, f"{p}/resource[{i}]")
                for i, r in enumerate(self._all(el, "resource"), 1)
            ),
            areas=tuple(
                self.area(a, f"{p}/area[{i}]") for i, a in enumerate(self._all(el, "area"), 1)
            ),
            parameters=tuple(
                self.parameter(g, f"{p}/parameter[{i}]")
                for i, g in enumerate(self._all(el, "parameter"), 1)
            ),
        )

    def parameter(self, el: Element, p: str) -> tuple[str, str]:
        return self.req(el, p, "valueName"), self.req(el, p, "value")

    def resource(self, el: Element, p: str) -> Resource:
        desc = self.req(el, p, "resourceDesc")
        mime = self.req(el, p, "mimeType") if self.version == "1.2" else self.opt(el, p, "mimeType")
        size_text = self.opt(el, p, "size")
        size = None
        if size_text is not None:
            if not (size_text.isascii() and size_text.isdigit()):
                raise CapError(
                    f"{p}/size: {size_text!r} is not a whole number of bytes", path=f"{p}/size"
                )
            size = int(size_text)
        deref_text = self.opt(el, p, "derefUri")
        deref = None
        if deref_text is not None:
            try:
                deref = base64.b64decode("".join(deref_text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise CapError(f"{p}/derefUri is not valid base64", path=f"{p}/derefUri") from None
        return Resource(
            resource_desc=desc,
            mime_type=mime,
            size=size,
            uri=self.opt(el, p, "uri"),
            deref=deref,
            digest=self.opt(el, p, "digest"),
        )

    def area(self, el: Element, p: str) -> Area:
        geocodes = []
        for i, g in enumerate(self._all(el, "geocode"), 1):
            gp = f"{p}/geocode[{i}]"
            geocodes.append(Geocode(self.req(g, gp, "valueName"), self.req(g, gp, "value")))
        return Area(
            area_desc=self.req(el, p, "areaDesc"),
            geocodes=tuple(geocodes),
            polygons=self.many(el, p, "polygon"),
            circles=self.many(el, p, "circle"),
        )
