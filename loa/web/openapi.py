"""The OpenAPI 3.1 document of the /api/v1 sub-app, served at ``GET /api/v1/openapi.json``.

Kept as data in one place: ``OPERATIONS`` maps each path (as the sub-app's router spells it)
to its methods, and ``build()`` expands each entry into an OpenAPI operation: path
parameters from the template, the 401 of every non-public route, the 403 a cookie session
without its CSRF header earns on any change, and the shared error schema. A test walks the
real app's router and this document in both directions, so a route added without its entry
(or an entry without its route) fails the suite."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from loa import __version__
from loa.web.auth import COOKIE, CSRF_HEADER
from loa.web.keys import DOCUMENT

Schema = dict[str, Any]
PREFIX = "/api/v1"
_PARAM = re.compile(r"\{([^}/]+)\}")


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **props: Schema) -> Schema:
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def listing(key: str, item: Schema) -> Schema:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": item}},
    }


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STR: Schema = {"type": "string"}
ID: Schema = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[^\s/?#%\\]+$"}
BOOL: Schema = {"type": "boolean"}
NUM: Schema = {"type": "number"}
INT: Schema = {"type": "integer"}
LEVEL: Schema = {"type": "integer", "minimum": 0, "maximum": 100}
UNIX: Schema = {"type": "number", "description": "Unix time in seconds"}
NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 200}
LAT: Schema = nullable({"type": "number", "minimum": -90, "maximum": 90})
LON: Schema = nullable({"type": "number", "minimum": -180, "maximum": 180})
ADDRESS: Schema = nullable({"type": "string", "description": "host:port (rtp endpoints)"})
ROLE: Schema = {"enum": ["admin", "operator", "viewer"]}
CLASS: Schema = {"enum": ["background", "scheduled", "priority", "live", "emergency"]}
TARGETS: Schema = obj(
    zones={"type": "array", "items": ID}, endpoints={"type": "array", "items": ID}
)
LOG_ENTRY: Schema = {
    "type": "object",
    "required": ["id", "what", "class", "targets", "state"],
    "properties": {
        "id": ID,
        "what": STR,
        "source": STR,
        "class": CLASS,
        "origin_zone": nullable(ID),
        "targets": TARGETS,
        "created_by": nullable(STR),
        "requested_at": UNIX,
        "started_at": nullable(UNIX),
        "ended_at": nullable(UNIX),
        "state": STR,
        "reason": nullable(STR),
        "endpoints_heard": INT,
        "heard_s": {"type": "object", "additionalProperties": NUM},
        "preemptions": INT,
    },
}
ZONE: Schema = {
    "type": "object",
    "required": ["id", "name", "parent", "timezone", "languages"],
    "properties": {
        "id": ID,
        "name": NAME,
        "parent": nullable(ID),
        "timezone": STR,
        "languages": {"type": "array", "items": STR},
        "level": INT,
    },
}
ENDPOINT: Schema = {
    "type": "object",
    "required": ["id", "name", "zone", "kind", "online", "volume", "emergency_volume", "muted"],
    "properties": {
        "id": ID,
        "name": NAME,
        "zone": ID,
        "kind": {"enum": ["managed", "rtp"]},
        "location": obj(lat=LAT, lon=LON),
        "online": BOOL,
        "transport": nullable({"enum": ["udp", "ws"]}),
        "last_seen": nullable(UNIX),
        "playing": nullable(ID),
        "volume": LEVEL,
        "emergency_volume": LEVEL,
        "muted": BOOL,
        "status": {"type": "object"},
        "token": {"type": "string", "description": "device token: only in the answer that made it"},
    },
}
SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": STR, "message": STR},
                "additionalProperties": True,
                "description": "further fields name what the error is about (zone, holder, …)",
            }
        },
    },
    "Zone": ZONE,
    "ZoneDetail": {
        "allOf": [
            ZONE,
            {
                "type": "object",
                "required": ["children", "endpoints"],
                "properties": {
                    "children": {"type": "array", "items": ID},
                    "endpoints": obj(("here", "total", "online"), here=INT, total=INT, online=INT),
                },
            },
        ]
    },
    "Endpoint": ENDPOINT,
    "StoredEndpoint": obj(
        ("id", "name", "zone", "kind"),
        id=ID,
        name=NAME,
        zone=ID,
        kind={"enum": ["managed", "rtp"]},
        address=ADDRESS,
        lat=LAT,
        lon=LON,
        volume=LEVEL,
        emergency_volume=LEVEL,
        has_token=BOOL,
    ),
    "Broadcast": {
        "allOf": [
            LOG_ENTRY,
            {
                "type": "object",
                "properties": {
                    "listeners": {"type": "array", "items": ID},
                    "virtual_listeners": INT,
                    "frames": INT,
                },
            },
        ]
    },
    "LogEntry": LOG_ENTRY,
    "Media": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": ID, "size": INT, "duration_s": NUM, "rms_dbfs": NUM},
    },
    "AuditEntry": obj(
        id=INT,
        ts=UNIX,
        user=nullable(STR),
        action=STR,
        target=nullable(STR),
        detail={"type": "object"},
        ip=nullable(STR),
    ),
    "User": obj(
        ("username", "role", "zone", "emergency_right", "disabled"),
        username=STR,
        role=ROLE,
        zone=nullable(ID),
        emergency_right=BOOL,
        disabled=BOOL,
        created_at=UNIX,
    ),
    "Me": obj(
        ("username", "role", "zone", "emergency_right"),
        username=STR,
        role=ROLE,
        zone=nullable(ID),
        emergency_right=BOOL,
        csrf=nullable({"type": "string", "description": "send back as X-CSRF-Token"}),
    ),
    "ApiToken": obj(
        ("id", "username", "label"),
        id=INT,
        username=STR,
        label=STR,
        created_at=UNIX,
        last_used=nullable(UNIX),
        token={"type": "string", "description": "only in the answer that made it"},
    ),
}

# -- request bodies ------------------------------------------------------------------------------
SOURCE: Schema = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["tone", "silence", "tts", "media", "url", "playlist"]},
        "freq_hz": NUM,
        "duration_s": NUM,
        "level_dbfs": NUM,
        "text": STR,
        "voice": STR,
        "rate_wpm": NUM,
        "pitch": NUM,
        "id": ID,
        "url": STR,
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Source"}},
    },
}
SCHEMAS["Source"] = SOURCE
NEW_BROADCAST = obj(
    ("source", "targets"),
    id=ID,
    name=NAME,
    source=ref("Source"),
    targets=TARGETS,
    origin_zone=ID,
    interrupt=BOOL,
    exclusive=BOOL,
    chime=BOOL,
    expires_at=UNIX,
    **{"class": CLASS},
)
NEW_ZONE = obj(
    ("id", "name", "parent"),
    id=ID,
    name=NAME,
    parent=nullable(ID),
    timezone=STR,
    languages={"type": "array", "items": STR},
)
ZONE_CHANGE = obj(
    name=NAME, timezone=STR, languages={"type": "array", "items": STR}, parent=nullable(ID)
)
NEW_ENDPOINT = obj(
    ("id", "name", "zone"),
    id=ID,
    name=NAME,
    zone=ID,
    kind={"enum": ["managed", "rtp"]},
    address=ADDRESS,
    lat=LAT,
    lon=LON,
    volume=LEVEL,
    emergency_volume=LEVEL,
)
ENDPOINT_CHANGE = obj(
    name=NAME,
    zone=ID,
    address=ADDRESS,
    lat=LAT,
    lon=LON,
    volume=LEVEL,
    emergency_volume=LEVEL,
    muted=BOOL,
)
PASSWORD: Schema = {"type": "string", "minLength": 8}
NEW_USER = obj(
    ("username", "password", "role"),
    username={"type": "string", "pattern": r"^[a-z0-9][a-z0-9._-]{0,31}$"},
    password=PASSWORD,
    role=ROLE,
    zone=nullable(ID),
    emergency_right=BOOL,
)
USER_CHANGE = obj(
    role=ROLE,
    zone=nullable(ID),
    emergency_right=BOOL,
    disabled=BOOL,
    password=PASSWORD,
    current_password={"type": "string", "description": "required to change your own password"},
)
NEW_TOKEN = obj(("label",), label={"type": "string", "minLength": 1, "maxLength": 100})
SDP = {"application/sdp": {"schema": STR}}


def op(
    summary: str,
    tag: str,
    *,
    ok: int = 200,
    returns: Schema | None = None,
    body: Schema | None = None,
    errors: tuple[int, ...] = (),
    public: bool = False,
    content: dict[str, Any] | None = None,
    query: tuple[tuple[str, Schema], ...] = (),
    request_content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation as it appears in ``OPERATIONS`` (``build`` adds what every route shares)."""
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "_errors": errors}
    descriptions = {101: "switching to WebSocket", 201: "created", 405: "not supported"}
    description = descriptions.get(ok, "OK")
    answer: dict[str, Any] = {"description": description}
    if ok >= 400:  # an operation that only refuses (PATCH of a WHIP/WHEP session)
        content = {"application/json": {"schema": ref("Error")}}
    if content is not None:
        answer["content"] = content
    elif returns is not None:
        answer["content"] = {"application/json": {"schema": returns}}
    out["responses"] = {str(ok): answer}
    if body is not None:
        request_content = {"application/json": {"schema": body}}
    if request_content is not None:
        out["requestBody"] = {"required": True, "content": request_content}
    if query:
        out["parameters"] = [
            {"name": n, "in": "query", "required": False, "schema": s} for n, s in query
        ]
    if public:
        out["security"] = []
    return out


# -- reports and webhooks --------------------------------------------------------------------
PCT: Schema = nullable({"type": "number", "minimum": 0, "maximum": 100})
REPORT_FIGURES: dict[str, Schema] = {
    "broadcasts": INT,
    "emergencies": INT,
    "played_s": NUM,
    "requested_s": NUM,
    "availability_pct": PCT,
}
SCHEMAS["EndpointReport"] = obj(
    tuple(["endpoint", "name", "zone", *REPORT_FIGURES]),
    endpoint=ID,
    name=NAME,
    zone=ID,
    **REPORT_FIGURES,
)
SCHEMAS["ZoneReport"] = obj(
    tuple(["zone", "name", "endpoints", *REPORT_FIGURES]),
    zone=ID,
    name=NAME,
    endpoints=INT,
    **REPORT_FIGURES,
)
EVENT: Schema = {"enum": ["broadcast.logged", "endpoint.online", "endpoint.offline"]}
SCHEMAS["Webhook"] = obj(
    ("id", "url", "events", "enabled", "created_at"),
    id=INT,
    url=STR,
    events={"type": "array", "items": EVENT},
    enabled=BOOL,
    created_at=UNIX,
    secret={"type": "string", "description": "only in the answer that made it"},
)
SCHEMAS["Delivery"] = obj(
    ("id", "hook", "event", "payload", "state", "attempts"),
    id=INT,
    hook=INT,
    event={"enum": [*EVENT["enum"], "webhook.test"]},
    payload={"type": "object"},
    state={"enum": ["pending", "delivered", "dead"]},
    attempts=INT,
    next_attempt_at=UNIX,
    last_error=nullable(STR),
    created_at=UNIX,
    delivered_at=nullable(UNIX),
    dead_at=nullable(UNIX),
)
NEW_WEBHOOK = obj(
    ("url", "events"),
    url={"type": "string", "format": "uri", "description": "http:// or https://, no credentials"},
    events={"type": "array", "items": EVENT, "minItems": 1},
    secret={"type": "string", "minLength": 16, "maxLength": 256, "description": "made if absent"},
    enabled=BOOL,
)
REPORT_QUERY = (
    ("since", UNIX),
    ("until", UNIX),
    ("zone", ID),
    ("format", {"enum": ["json", "csv"]}),
    ("tz", STR),
)
CSV_OR_JSON = {"text/csv": {"schema": STR}}


def report(kind: str, item: str) -> dict[str, Any]:
    returns = {
        "type": "object",
        "required": ["since", "until", kind],
        "properties": {"since": UNIX, "until": UNIX, kind: {"type": "array", "items": ref(item)}},
    }
    return op(
        f"Per {kind[:-1]} over [since, until): broadcasts and emergencies heard, air time played "
        "vs requested, availability; narrowed to the caller's zones (format=csv for CSV)",
        "reports",
        content={"application/json": {"schema": returns}, **CSV_OR_JSON},
        query=REPORT_QUERY,
        errors=(400, 404),
    )


JSON_IN = (400, 415)
LOG_QUERY = (("zone", ID), ("since", UNIX), ("until", UNIX), ("class", CLASS))
PAGE = (("limit", {"type": "integer", "minimum": 0, "maximum": 1000}), ("offset", INT))
WEBRTC_IN = (400, 415, 422, 503)

OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/openapi.json": {"get": op("This document", "meta", returns={"type": "object"}, public=True)},
    "/me": {
        "get": op("Who the caller is (and the page's CSRF token)", "accounts", returns=ref("Me"))
    },
    "/speaker": {
        "get": op(
            "Speaker control channel (WebSocket; the device token goes in the hello message)",
            "speakers",
            ok=101,
            errors=(400,),
            public=True,
        )
    },
    "/status/ws": {
        "get": op("Live endpoint and broadcast status (WebSocket)", "status", ok=101, errors=(400,))
    },
    "/zones": {
        "get": op("Zones the caller sees", "zones", returns=listing("zones", ref("Zone"))),
        "post": op(
            "Add a zone (operators: under a zone inside their own)",
            "zones",
            ok=201,
            body=NEW_ZONE,
            returns=ref("ZoneDetail"),
            errors=(*JSON_IN, 403, 404, 409),
        ),
    },
    "/zones/{id}": {
        "get": op(
            "A zone, its children and endpoint counts",
            "zones",
            returns=ref("ZoneDetail"),
            errors=(404,),
        ),
        "patch": op(
            "Rename, change time zone or languages, or move (parent) a zone",
            "zones",
            body=ZONE_CHANGE,
            returns=ref("ZoneDetail"),
            errors=(*JSON_IN, 403, 404, 409),
        ),
        "delete": op("Remove an empty zone", "zones", returns=ref("Zone"), errors=(403, 404, 409)),
    },
    "/endpoints": {
        "get": op(
            "Endpoints the caller sees", "endpoints", returns=listing("endpoints", ref("Endpoint"))
        ),
        "post": op(
            "Add an endpoint (a managed one answers with its device token, once)",
            "endpoints",
            ok=201,
            body=NEW_ENDPOINT,
            returns=ref("Endpoint"),
            errors=(*JSON_IN, 403, 404, 409),
        ),
    },
    "/endpoints/{id}": {
        "get": op(
            "An endpoint and its live state", "endpoints", returns=ref("Endpoint"), errors=(404,)
        ),
        "patch": op(
            "Change name, zone, place, address, levels (kept) or mute (live)",
            "endpoints",
            body=ENDPOINT_CHANGE,
            returns=ref("Endpoint"),
            errors=(*JSON_IN, 403, 404),
        ),
        "delete": op(
            "Remove an endpoint (its speaker is disconnected)",
            "endpoints",
            returns=ref("StoredEndpoint"),
            errors=(403, 404),
        ),
    },
    "/endpoints/{id}/token": {
        "post": op(
            "A new device token (shown once); the speaker using the old one is disconnected",
            "endpoints",
            returns=ref("Endpoint"),
            errors=(400, 403, 404),
        )
    },
    "/endpoints/{id}/sdp": {
        "get": op(
            "SDP that plays an rtp endpoint's stream", "endpoints", content=SDP, errors=(400, 404)
        )
    },
    "/broadcasts": {
        "get": op(
            "Running broadcasts the caller sees",
            "broadcasts",
            returns=listing("broadcasts", ref("Broadcast")),
        ),
        "post": op(
            "Start a broadcast",
            "broadcasts",
            ok=201,
            body=NEW_BROADCAST,
            returns=ref("Broadcast"),
            errors=(*JSON_IN, 403, 404, 409, 422),
        ),
    },
    "/broadcasts/{id}": {
        "get": op(
            "A running or logged broadcast",
            "broadcasts",
            returns={"anyOf": [ref("Broadcast"), ref("LogEntry")]},
            errors=(404,),
        ),
        "delete": op("Stop a broadcast", "broadcasts", returns=ref("LogEntry"), errors=(403, 404)),
    },
    "/log": {
        "get": op(
            "The broadcast log, narrowed to the caller's zones",
            "records",
            returns={
                "type": "object",
                "properties": {
                    "entries": {"type": "array", "items": ref("LogEntry")},
                    "total": INT,
                },
            },
            query=LOG_QUERY + PAGE,
            errors=(400, 404),
        )
    },
    "/log.csv": {
        "get": op(
            "The broadcast log as CSV",
            "records",
            content={"text/csv": {"schema": STR}},
            query=(*LOG_QUERY, ("tz", STR)),
            errors=(400, 404),
        )
    },
    "/audit": {
        "get": op(
            "The audit log (admins)",
            "records",
            returns=listing("entries", ref("AuditEntry")),
            query=(("user", STR), ("action", STR), ("since", UNIX), ("until", UNIX), *PAGE),
            errors=(400, 403),
        )
    },
    "/media": {
        "get": op("The media library", "media", returns=listing("media", ref("Media"))),
        "post": op(
            "Upload audio (raw body, any format av decodes), size-limited",
            "media",
            ok=201,
            request_content={
                "application/octet-stream": {
                    "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
                }
            },
            query=(("filename", STR),),
            returns=ref("Media"),
            errors=(403, 413, 422),
        ),
    },
    "/media/{id}": {
        "delete": op("Remove a media file", "media", returns=ref("Media"), errors=(403, 404))
    },
    "/whip": {
        "post": op(
            "Publish live audio by WHIP (RFC 9725): SDP offer in, answer out, Location header",
            "webrtc",
            ok=201,
            request_content=SDP,
            content=SDP,
            query=(
                ("zones", STR),
                ("endpoints", STR),
                ("class", CLASS),
                ("origin_zone", ID),
                ("interrupt", BOOL),
                ("exclusive", BOOL),
                ("expires_at", UNIX),
                ("chime", BOOL),
                ("name", NAME),
                ("id", ID),
            ),
            errors=(*WEBRTC_IN, 403, 404, 409),
        )
    },
    "/whip/{session}": {
        "delete": op("End a WHIP session (and its broadcast)", "webrtc", errors=(404,)),
        "patch": op("Trickle ICE / ICE restart: not supported", "webrtc", ok=405),
    },
    "/whep": {
        "post": op(
            "Listen to a zone by WHEP: SDP offer in, answer out, Location header",
            "webrtc",
            ok=201,
            request_content=SDP,
            content=SDP,
            query=(("zone", ID),),
            errors=(*WEBRTC_IN, 404),
        )
    },
    "/whep/{session}": {
        "delete": op("End a WHEP session", "webrtc", errors=(404,)),
        "patch": op("Trickle ICE / ICE restart: not supported", "webrtc", ok=405),
    },
    "/users": {
        "get": op(
            "Every user (admins)", "accounts", returns=listing("users", ref("User")), errors=(403,)
        ),
        "post": op(
            "Add a user (admins)",
            "accounts",
            ok=201,
            body=NEW_USER,
            returns=ref("User"),
            errors=(*JSON_IN, 403, 404, 409),
        ),
    },
    "/users/{username}": {
        "patch": op(
            "Change a user (admins), or one's own password (with current_password)",
            "accounts",
            body=USER_CHANGE,
            returns=ref("User"),
            errors=(*JSON_IN, 403, 404, 409),
        ),
        "delete": op(
            "Remove a user (admins)", "accounts", returns=ref("User"), errors=(403, 404, 409)
        ),
    },
    "/users/{username}/tokens": {
        "get": op(
            "A user's API tokens (their own, or anyone's for admins)",
            "accounts",
            returns=listing("tokens", ref("ApiToken")),
            errors=(403, 404),
        ),
        "post": op(
            "A new API token, shown once",
            "accounts",
            ok=201,
            body=NEW_TOKEN,
            returns=ref("ApiToken"),
            errors=(*JSON_IN, 403, 404),
        ),
    },
    "/users/{username}/tokens/{id}": {
        "delete": op("Revoke an API token", "accounts", returns=ref("ApiToken"), errors=(403, 404)),
    },
    "/reports/endpoints": {"get": report("endpoints", "EndpointReport")},
    "/reports/zones": {"get": report("zones", "ZoneReport")},
    "/webhooks": {
        "get": op(
            "Webhook subscriptions (admins)",
            "webhooks",
            returns=listing("webhooks", ref("Webhook")),
            errors=(403,),
        ),
        "post": op(
            "Subscribe a URL to events (admins); the answer carries the signing secret, once",
            "webhooks",
            ok=201,
            body=NEW_WEBHOOK,
            returns=ref("Webhook"),
            errors=(*JSON_IN, 403),
        ),
    },
    "/webhooks/{id}": {
        "delete": op(
            "Remove a webhook and its outbox (admins)",
            "webhooks",
            returns=ref("Webhook"),
            errors=(403, 404),
        )
    },
    "/webhooks/{id}/deliveries": {
        "get": op(
            "A webhook's deliveries, newest first, dead letters included (admins)",
            "webhooks",
            returns=listing("deliveries", ref("Delivery")),
            query=(("state", {"enum": ["pending", "delivered", "dead"]}), *PAGE),
            errors=(400, 403, 404),
        )
    },
    "/webhooks/{id}/test": {
        "post": op(
            "Queue a webhook.test event for this webhook (admins)",
            "webhooks",
            ok=202,
            returns=ref("Delivery"),
            errors=(403, 404),
        )
    },
}

# -- bulletins (the inbox from the source system) ---------------------------------------------
BULLETIN_LEVEL: Schema = {"enum": ["normal", "priority", "emergency"]}
BULLETIN_STATE: Schema = {"enum": ["inbox", "scheduled", "on_air", "done", "cancelled", "expired"]}
LANG_TAG: Schema = {"type": "string", "minLength": 2, "maxLength": 35}
VARIANT: Schema = {
    "oneOf": [
        obj(("language", "text"), language=LANG_TAG, text={"type": "string", "minLength": 1}),
        obj(("language", "media"), language=LANG_TAG, media=ID),
    ]
}
SCHEMAS["Bulletin"] = {
    **obj(
        ("id", "level", "zones", "title", "variants", "issued_at", "state", "source"),
        id=ID,
        level=BULLETIN_LEVEL,
        zones={"type": "array", "items": ID},
        title=NAME,
        variants={"type": "array", "items": VARIANT},
        issued_at=UNIX,
        expires_at=nullable(UNIX),
        repeat_every_s=nullable(NUM),
        state=BULLETIN_STATE,
        source={"enum": ["api", "cap"]},
        cap_sender=nullable(STR),
        cap_identifier=nullable(STR),
        broadcasts={"type": "array", "items": STR},
        created_by=STR,
        created_at=UNIX,
        updated_at=UNIX,
    ),
    "additionalProperties": True,  # POST /bulletins/cap adds superseded and warnings
}
NEW_BULLETIN = obj(
    ("level", "zones", "title", "variants"),
    level=BULLETIN_LEVEL,
    zones={"type": "array", "items": ID, "minItems": 1},
    title=NAME,
    variants={"type": "array", "items": VARIANT, "minItems": 1, "maxItems": 10},
    issued_at=UNIX,
    expires_at=UNIX,
    repeat_every_s={"type": "number", "minimum": 1, "description": "emergency only"},
)
CAP_OUTCOME: Schema = {
    "anyOf": [
        ref("Bulletin"),
        obj(
            ("cancelled", "unknown"),
            cancelled={"type": "array", "items": ID},
            unknown={"type": "array", "items": STR},
        ),
        obj(("ignored", "warnings"), ignored=STR, warnings={"type": "array", "items": STR}),
    ]
}
CAP_XML = {"schema": {"type": "string", "description": "one CAP 1.2 (or 1.1) <alert>"}}
CAP_OTHER = {
    "description": "a Cancel applied, or an alert that plays nothing (the reason is given)",
    "content": {"application/json": {"schema": CAP_OUTCOME}},
}
OPERATIONS.update(
    {
        "/bulletins": {
            "get": op(
                "Bulletins the caller sees (any of their zones), newest first",
                "bulletins",
                returns=listing("bulletins", ref("Bulletin")),
                query=(("state", BULLETIN_STATE),),
                errors=(400,),
            ),
            "post": op(
                "A bulletin: normal waits in the inbox, priority and emergency go on air",
                "bulletins",
                ok=201,
                body=NEW_BULLETIN,
                returns=ref("Bulletin"),
                errors=(*JSON_IN, 403, 404, 409),
            ),
        },
        "/bulletins/cap": {
            "post": op(
                "A CAP 1.2 alert from the source system (201 bulletin, 200 cancel or ignored)",
                "bulletins",
                ok=201,
                returns=CAP_OUTCOME,
                request_content={
                    "application/cap+xml": CAP_XML,
                    "application/xml": CAP_XML,
                    "text/xml": CAP_XML,
                },
                errors=(403, 409, 413, 415, 422),
            )
        },
        "/bulletins/{id}": {
            "get": op("One bulletin", "bulletins", returns=ref("Bulletin"), errors=(404,))
        },
        "/bulletins/{id}/schedule": {
            "post": op(
                "Play a normal bulletin from the inbox now, or at Unix time 'at'",
                "bulletins",
                body=obj(at=nullable(UNIX)),
                returns=ref("Bulletin"),
                errors=(*JSON_IN, 404, 409),
            )
        },
        "/bulletins/{id}/cancel": {
            "post": op(
                "Withdraw a bulletin: its broadcast stops and no repeat follows",
                "bulletins",
                returns=ref("Bulletin"),
                errors=(404, 409),
            )
        },
    }
)
OPERATIONS["/bulletins/cap"]["post"]["responses"]["200"] = CAP_OTHER

# -- schedules -------------------------------------------------------------------------------
SCHEDULE_ITEM: Schema = {
    "type": "object",
    "required": ["type"],
    "description": "media {id}, url {url, duration_s}, tts {text, voice, rate_wpm}, "
    "silence {duration_s}",
    "properties": {
        "type": {"enum": ["media", "url", "tts", "silence"]},
        "id": STR,
        "url": STR,
        "duration_s": NUM,
        "text": STR,
        "voice": STR,
        "rate_wpm": INT,
    },
}
SCHEDULE_FIELDS: dict[str, Schema] = {
    "name": NAME,
    "zone": nullable(ID),
    "dtstart": {
        "anyOf": [UNIX, {"type": "string", "description": "local ISO time, e.g. 2025-03-03T05:00"}]
    },
    "rrule": {"type": "string", "description": "one RFC 5545 RRULE, e.g. FREQ=DAILY;BYHOUR=5"},
    "timezone": {"type": "string", "description": "IANA name; default the zone's"},
    "grace_s": {"type": "number", "minimum": 0, "maximum": 86400},
    "items": {"type": "array", "items": SCHEDULE_ITEM, "minItems": 1, "maxItems": 100},
    "targets": TARGETS,
    "class": {"enum": ["scheduled", "background"]},
    "enabled": BOOL,
}
SCHEMAS["Schedule"] = obj(
    ("id", "name", "zone", "dtstart", "rrule", "timezone", "grace_s", "items", "targets"),
    id=ID,
    **{**SCHEDULE_FIELDS, "dtstart": UNIX},
    created_by=STR,
    created_at=UNIX,
)
SCHEDULE_RUN: Schema = obj(
    ("schedule", "broadcast", "start", "planned_s", "end", "outcomes", "contested"),
    schedule=ID,
    broadcast=ID,
    start=UNIX,
    planned_s=NUM,
    end=nullable(UNIX),
    contested=BOOL,
    outcomes={
        "type": "array",
        "items": obj(
            ("endpoint", "holder", "wins", "heard_s", "others"),
            endpoint=ID,
            holder=nullable(ID),
            wins=BOOL,
            heard_s=NUM,
            others={"type": "array", "items": {"type": "object"}},
        ),
    },
)
OPERATIONS.update(
    {
        "/schedules": {
            "get": op(
                "Schedules the caller sees (origin or a target in their zones)",
                "schedules",
                returns=listing("schedules", ref("Schedule")),
            ),
            "post": op(
                "A schedule: a programme of items played at each start of an RRULE",
                "schedules",
                ok=201,
                body=obj(
                    ("name", "dtstart", "rrule", "items", "targets"), id=ID, **SCHEDULE_FIELDS
                ),
                returns=ref("Schedule"),
                errors=(*JSON_IN, 403, 404, 409),
            ),
        },
        "/schedules/conflicts": {
            "get": op(
                "Runs starting in [since, until) (at most 31 days) and who wins each endpoint",
                "schedules",
                returns=obj(
                    ("since", "until", "runs"),
                    since=UNIX,
                    until=UNIX,
                    runs={"type": "array", "items": SCHEDULE_RUN},
                ),
                query=(("since", UNIX), ("until", UNIX)),
                errors=(400, 404),
            )
        },
        "/schedules/{id}": {
            "get": op("One schedule", "schedules", returns=ref("Schedule"), errors=(404,)),
            "patch": op(
                "Change a schedule (any of its fields but id)",
                "schedules",
                body=obj((), **SCHEDULE_FIELDS),
                returns=ref("Schedule"),
                errors=(*JSON_IN, 403, 404),
            ),
            "delete": op(
                "Remove a schedule", "schedules", returns=ref("Schedule"), errors=(403, 404)
            ),
        },
        "/schedules/{id}/preview": {
            "get": op(
                "The next n starts (default 10, at most 100) after 'after' (default now)",
                "schedules",
                returns=obj(
                    ("id", "timezone", "starts"),
                    id=ID,
                    timezone=STR,
                    starts={"type": "array", "items": obj(("at", "local"), at=UNIX, local=STR)},
                ),
                query=(("n", {"type": "integer", "minimum": 1, "maximum": 100}), ("after", UNIX)),
                errors=(400, 404),
            )
        },
    }
)

ERRORS = {
    400: "bad input; the message names the field",
    401: "no valid bearer token or session cookie",
    403: "not allowed: role, zone scope, emergency right, or a cookie session without CSRF",
    404: "no such resource, or one outside the caller's zones",
    405: "method not allowed",
    409: "conflicts with the current state; the error names what is in the way",
    413: "body larger than its limit (web.max_upload_mb; 256 KiB for a CAP document)",
    415: "wrong Content-Type",
    422: "unusable (undecodable media, an offer without Opus audio, a refused CAP document)",
    503: "too many sessions; retry later",
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"},
    "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": CSRF_HEADER,
        "description": "with a session cookie, required on every non-GET request",
    },
}
SAFE = frozenset({"get", "head", "options"})


def _operation(path: str, method: str, entry: dict[str, Any]) -> dict[str, Any]:
    operation = {k: v for k, v in entry.items() if k != "_errors"}
    operation["operationId"] = method + re.sub(r"\W+", "_", path).rstrip("_")
    codes = set(entry["_errors"])
    public = entry.get("security") == []
    if not public:
        codes.add(401)
        if method not in SAFE:
            codes.add(403)
    responses = dict(operation["responses"])
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    operation["responses"] = responses
    names = _PARAM.findall(path)
    if names:
        params = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": INT if n == "id" and path.startswith("/users/") else STR,
            }
            for n in names
        ]
        operation["parameters"] = params + list(operation.get("parameters", []))
    return operation


def build() -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    paths = {
        path: {m: _operation(path, m, entry) for m, entry in methods.items()}
        for path, methods in OPERATIONS.items()
    }
    error = {"application/json": {"schema": ref("Error")}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "loa — commune IP radio relay",
            "version": __version__,
            "description": 'Errors are {"error": {"code", "message", …}} with a stable code.',
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}, {"session": [], "csrf": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": SECURITY_SCHEMES,
            "responses": {
                f"E{code}": {"description": text, "content": error} for code, text in ERRORS.items()
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.config_dict[DOCUMENT], content_type="application/json")


def setup(api: web.Application) -> None:
    """Add ``GET /openapi.json`` (public) to the /api/v1 sub-app."""
    api[DOCUMENT] = json.dumps(build(), ensure_ascii=False, indent=1).encode()
    api.router.add_get("/openapi.json", openapi_json)
