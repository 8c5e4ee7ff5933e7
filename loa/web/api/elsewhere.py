"""Declarations of the /api/v1 routes whose handlers live outside loa/web/api: the speaker
socket, WHIP and WHEP (their bodies are SDP), the live status socket, /me and the OpenAPI
document. Their query strings are held to these by ``contract.declared_queries``."""

from __future__ import annotations

from loa.web.api import answers
from loa.web.api.queries import WhepQuery, WhepSessionQuery, WhipQuery
from loa.web.contract import Operation, declare

SDP = {"application/sdp": {"type": "string", "description": "an SDP offer or answer"}}
WEBRTC_IN = (403, 404, 409, 415, 422, 503)


def declare_all() -> None:
    declare(
        "GET",
        "/speaker",
        Operation(
            "Speaker control channel (WebSocket; the device token goes in the hello message)",
            "speakers",
            ok=101,
            public=True,
        ),
    )
    declare(
        "GET",
        "/status/ws",
        Operation("Live endpoint and broadcast status (WebSocket)", "status", ok=101),
    )
    declare(
        "GET",
        "/me",
        Operation("Who the caller is (and the page's CSRF token)", "accounts", returns=answers.Me),
    )
    declare(
        "GET",
        "/openapi.json",
        Operation("This document", "meta", returns={"type": "object"}, public=True),
    )
    declare(
        "POST",
        "/whip",
        Operation(
            "Publish live audio by WHIP (RFC 9725): SDP offer in, answer out, Location header",
            "webrtc",
            ok=201,
            query=WhipQuery,
            request_content=SDP,
            content=SDP,
            errors=WEBRTC_IN,
        ),
    )
    declare(
        "POST",
        "/whep",
        Operation(
            "Listen to a zone by WHEP: SDP offer in, answer out, Location header; an API "
            "token, or the zone's listen token (Bearer or ?token=)",
            "webrtc",
            ok=201,
            query=WhepQuery,
            request_content=SDP,
            content=SDP,
            errors=WEBRTC_IN,
        ),
    )
    for kind in ("whip", "whep"):
        query = WhepSessionQuery if kind == "whep" else None
        declare(
            "DELETE",
            f"/{kind}/{{session}}",
            Operation(f"End a {kind.upper()} session", "webrtc", query=query, errors=(404,)),
        )
        declare(
            "PATCH",
            f"/{kind}/{{session}}",
            Operation(
                "Trickle ICE / ICE restart: not supported",
                "webrtc",
                ok=405,
                query=query,
                returns=answers.Error,
            ),
        )
