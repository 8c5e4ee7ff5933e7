"""Who may call what, for every route of the /api/v1 sub-app (parametrised per route).

The world: province p ⊃ communes c0, c1; villages v0 ⊂ c0, v1 ⊂ c1; endpoints c0-e0, c0-e1,
rtp0 (rtp) in c0 and c1-e0, c1-e1, rtp1 (rtp) in c1; running broadcasts bc0 → c0 (by op)
and bc1 → c1 (by the admin); one media file (c0's, uploaded by op). Users: the config's
admin token, ``op`` (operator of c0), ``ope`` (operator of c0 with the emergency right) and
``viewer`` (reads everything).

403 or 404, and why:
- A resource outside the caller's zones answers 404, word for word as if it did not exist
  (an operator of c0 learns nothing about c1's zones, endpoints, broadcasts or sessions).
- A forbidden action on something the caller sees answers 403: a viewer changing anything,
  an operator changing their own root zone or making a root zone, any non-admin on admin
  routes (/audit, /users) or on another user's account or tokens.
- A broadcast (POST /broadcasts, POST /whip) that names targets outside the operator's zone
  answers 403 naming them: the request itself is forbidden, and the message says what to
  remove, rather than pretending that a zone the operator typed does not exist.

Every status a call gets here must be one the OpenAPI document lists for that operation."""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCConfiguration, RTCPeerConnection

from loa.config import with_changes
from loa.web import auth
from loa.web.app import create_app
from tests.conftest import AUTH, tree_config
from tests.web.test_api_admin import account
from tests.web.test_openapi import document, routes_of

# A full app and world per route, a hundred routes: the whole suite runs them, not the fast loop.
pytestmark = pytest.mark.slow

OFFER = "<sdp offer>"  # a body placeholder: a real aiortc offer is made for the call
TONE = {"type": "tone", "freq_hz": 1000}
HOOK = {"url": "http://127.0.0.1:9/loa", "events": ["endpoint.online"]}


def bc(zone: str, klass: str = "scheduled", **extra: Any) -> dict[str, Any]:
    return {"source": TONE, "targets": {"zones": [zone]}, "class": klass, "chime": False, **extra}


def rep(zone: str) -> dict[str, Any]:
    """An emergency to ``zone`` that repeats every hour."""
    return bc(zone, "emergency", repeat={"every_s": 3600})


def wav_bytes(seconds: float = 0.2) -> bytes:
    t = np.arange(int(48000 * seconds)) / 48000
    pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def sch(schedule_id: str, zone: str) -> dict[str, Any]:
    """A schedule body: five seconds of silence at 05:00 and 17:00 every day, to ``zone``."""
    return {
        "id": schedule_id,
        "name": "Phát thanh sáng",
        "dtstart": "2025-03-03T05:00",
        "rrule": "FREQ=DAILY;BYHOUR=5,17",
        "items": [{"type": "silence", "duration_s": 5}],
        "targets": {"zones": [zone]},
    }


WAV = wav_bytes()


@dataclass(frozen=True)
class Call:
    """One request by ``who`` (admin, op, ope, viewer, anon) and the status it must get.
    ``path`` may name world ids as {media}, {op_token}, {viewer_token} or a saved {name}."""

    who: str
    method: str
    path: str
    status: int
    body: Any = None
    content_type: str | None = None
    ws: bool = False
    save: str | None = None  # keep the Location's last segment (a WHIP/WHEP session id)
    check: Callable[[Any], bool] | None = None


def calls(who: str, method: str, *items: tuple[Any, ...]) -> list[Call]:
    """Shorthand: (path, status[, body]) tuples for one caller and method."""
    return [Call(who, method, p, s, *rest) for p, s, *rest in items]


def ids(key: str, items: str) -> Callable[[Any], bool]:
    return lambda data: sorted(x["id"] for x in data[items]) == key.split()


def names(key: str) -> Callable[[Any], bool]:
    """The broadcasts listed, by name (their ids are the server's)."""
    return lambda data: sorted(x["what"] for x in data["broadcasts"]) == key.split()


CAP_SAMPLES = Path(__file__).parent.parent / "data" / "cap"


def nb(zone: str, level: str = "normal") -> dict[str, Any]:
    """A bulletin to ``zone`` (text spoken)."""
    variants = [{"language": "vi", "text": "Thông báo."}]
    return {"level": level, "zones": [zone], "title": "Thông báo", "variants": variants}


def cap_to(zone: str, identifier: str = "T-1") -> bytes:
    """The typhoon sample, not yet expired, its areas given as zone ids (valueName loa)."""
    text = (CAP_SAMPLES / "typhoon.xml").read_text(encoding="utf-8")
    text = text.replace(
        "2025-09-13T08:00:00+07:00</expires>", "2099-01-01T00:00:00+07:00</expires>"
    )
    text = text.replace("VN-DVHC", "loa").replace("19183", zone).replace("19186", zone)
    return text.replace("QT-PCTT-2025-0912-001", identifier).encode()


ROUTES: dict[tuple[str, str], list[Call]] = {
    ("get", "/openapi.json"): [Call("anon", "GET", "/openapi.json", 200)],
    # public: the device token travels in the hello; a plain GET is not a handshake
    ("get", "/speaker"): [
        Call("anon", "GET", "/speaker", 400),
        Call("anon", "GET", "/speaker", 101, ws=True),
    ],
    ("get", "/me"): [
        Call("op", "GET", "/me", 200, check=lambda d: d["zone"] == "c0"),
        Call("viewer", "GET", "/me", 200),
    ],
    ("get", "/status/ws"): [
        Call("op", "GET", "/status/ws", 101, ws=True),
        Call("viewer", "GET", "/status/ws", 101, ws=True),
    ],
    ("get", "/zones"): [
        Call("op", "GET", "/zones", 200, check=ids("c0 v0", "zones")),
        Call("viewer", "GET", "/zones", 200, check=ids("c0 c1 p v0 v1", "zones")),
    ],
    ("post", "/zones"): [
        Call("op", "POST", "/zones", 404, {"id": "x", "name": "X", "parent": "c1"}),
        Call("op", "POST", "/zones", 404, {"id": "x", "name": "X", "parent": "p"}),
        Call("op", "POST", "/zones", 403, {"id": "x", "name": "X", "parent": None}),
        Call("viewer", "POST", "/zones", 403, {"id": "x", "name": "X", "parent": "c0"}),
        Call("op", "POST", "/zones", 409, {"id": "v1", "name": "X", "parent": "c0"}),
        Call("op", "POST", "/zones", 201, {"id": "x", "name": "X", "parent": "c0"}),
    ],
    ("get", "/zones/{id}"): [
        *calls("op", "GET", ("/zones/c1", 404), ("/zones/p", 404), ("/zones/nope", 404)),
        Call("viewer", "GET", "/zones/c1", 200),
        Call("op", "GET", "/zones/c0", 200),
    ],
    ("get", "/zones/{id}/listen"): [
        *calls("op", "GET", ("/zones/c1/listen", 404), ("/zones/p/listen", 404)),
        Call("op", "GET", "/zones/nope/listen", 404),
        Call("viewer", "GET", "/zones/c1/listen", 200, check=lambda d: d["zone"] == "c1"),
        Call("op", "GET", "/zones/v0/listen", 200, check=lambda d: "/listen/v0.ogg" in d["ogg"]),
    ],
    ("patch", "/zones/{id}"): [
        Call("op", "PATCH", "/zones/v1", 404, {"name": "X"}),
        Call("op", "PATCH", "/zones/c0", 403, {"name": "X"}),
        Call("op", "PATCH", "/zones/v0", 404, {"parent": "c1"}),
        Call("op", "PATCH", "/zones/v0", 400, {"name": ""}),
        Call("viewer", "PATCH", "/zones/v0", 403, {"name": "X"}),
        Call("admin", "PATCH", "/zones/nope", 404, {"name": "X"}),
        Call("op", "PATCH", "/zones/v0", 200, {"name": "Thôn Mới"}),
    ],
    ("delete", "/zones/{id}"): [
        *calls("op", "DELETE", ("/zones/v1", 404), ("/zones/c0", 403)),
        Call("viewer", "DELETE", "/zones/v0", 403),
        Call("admin", "DELETE", "/zones/c0", 409),  # it has a village and endpoints
        Call("op", "DELETE", "/zones/v0", 200),
    ],
    ("get", "/endpoints"): [
        Call("op", "GET", "/endpoints", 200, check=ids("c0-e0 c0-e1 rtp0", "endpoints")),
        Call("viewer", "GET", "/endpoints", 200),
    ],
    ("post", "/endpoints"): [
        Call("op", "POST", "/endpoints", 404, {"id": "x", "name": "X", "zone": "v1"}),
        Call("viewer", "POST", "/endpoints", 403, {"id": "x", "name": "X", "zone": "c0"}),
        Call("op", "POST", "/endpoints", 400, {"id": "x", "name": "X", "zone": "c0", "lat": 99}),
        Call("op", "POST", "/endpoints", 409, {"id": "c1-e0", "name": "X", "zone": "c0"}),
        Call("op", "POST", "/endpoints", 201, {"id": "x", "name": "X", "zone": "v0"}),
    ],
    ("get", "/endpoints/{id}"): [
        *calls("op", "GET", ("/endpoints/c1-e0", 404), ("/endpoints/nope", 404)),
        Call("viewer", "GET", "/endpoints/c1-e0", 200),
        Call("op", "GET", "/endpoints/c0-e0", 200),
    ],
    ("patch", "/endpoints/{id}"): [
        Call("op", "PATCH", "/endpoints/c1-e0", 404, {"volume": 10}),
        Call("viewer", "PATCH", "/endpoints/c0-e0", 403, {"volume": 10}),
        Call("op", "PATCH", "/endpoints/c0-e0", 404, {"zone": "c1"}),
        Call("op", "PATCH", "/endpoints/c0-e0", 400, {"volume": 101}),
        Call("op", "PATCH", "/endpoints/c0-e0", 200, {"volume": 10, "zone": "v0"}),
    ],
    ("delete", "/endpoints/{id}"): [
        Call("op", "DELETE", "/endpoints/c1-e0", 404),
        Call("viewer", "DELETE", "/endpoints/c0-e0", 403),
        *calls("op", "DELETE", ("/endpoints/c0-e1", 200), ("/endpoints/c0-e1", 404)),
    ],
    ("post", "/endpoints/{id}/token"): [
        Call("op", "POST", "/endpoints/c1-e0/token", 404),
        Call("viewer", "POST", "/endpoints/c0-e0/token", 403),
        Call("op", "POST", "/endpoints/rtp0/token", 409),
        Call("op", "POST", "/endpoints/c0-e0/token", 200, check=lambda d: bool(d["token"])),
    ],
    ("get", "/endpoints/{id}/sdp"): [
        Call("op", "GET", "/endpoints/rtp1/sdp", 404),
        Call("viewer", "GET", "/endpoints/rtp1/sdp", 200),
        Call("op", "GET", "/endpoints/c0-e0/sdp", 409),
        Call("op", "GET", "/endpoints/rtp0/sdp", 200),
    ],
    ("get", "/broadcasts"): [
        Call("op", "GET", "/broadcasts", 200, check=names("bc0")),
        Call("viewer", "GET", "/broadcasts", 200, check=names("bc0 bc1")),
    ],
    ("post", "/broadcasts"): [
        Call("op", "POST", "/broadcasts", 403, bc("c1")),
        Call("viewer", "POST", "/broadcasts", 403, bc("c0")),
        Call("op", "POST", "/broadcasts", 403, bc("c0", "emergency")),  # no emergency right
        Call("op", "POST", "/broadcasts", 404, bc("nowhere")),
        Call("op", "POST", "/broadcasts", 400, bc("c0", "urgent")),
        Call("op", "POST", "/broadcasts", 409, bc("c0", exclusive=True)),  # bc0 holds c0
        Call("ope", "POST", "/broadcasts", 201, bc("v0", "emergency")),
        Call("op", "POST", "/broadcasts", 201, bc("c0", "live")),
    ],
    ("get", "/broadcasts/{id}"): [
        *calls("op", "GET", ("/broadcasts/{bc1}", 404), ("/broadcasts/nope", 404)),
        Call("viewer", "GET", "/broadcasts/{bc1}", 200),
        Call("op", "GET", "/broadcasts/{bc0}", 200),
    ],
    ("delete", "/broadcasts/{id}"): [
        Call("op", "DELETE", "/broadcasts/{bc1}", 404),
        Call("viewer", "DELETE", "/broadcasts/{bc0}", 403),
        *calls("op", "DELETE", ("/broadcasts/{bc0}", 200), ("/broadcasts/{bc0}", 404)),
    ],
    ("get", "/repeats"): [
        Call("admin", "POST", "/broadcasts", 201, rep("c1"), save="theirs"),
        Call("op", "GET", "/repeats", 200, check=lambda d: d["repeats"] == []),
        Call("viewer", "GET", "/repeats", 200, check=lambda d: len(d["repeats"]) == 1),
    ],
    ("get", "/repeats/{id}"): [
        Call("admin", "POST", "/broadcasts", 201, rep("c1"), save="theirs"),
        Call("admin", "POST", "/broadcasts", 201, rep("c0"), save="mine"),
        *calls("op", "GET", ("/repeats/{theirs}", 404), ("/repeats/nope", 404)),
        Call("op", "GET", "/repeats/{mine}", 200),
    ],
    ("delete", "/repeats/{id}"): [
        Call("admin", "POST", "/broadcasts", 201, rep("c1"), save="theirs"),
        Call("admin", "POST", "/broadcasts", 201, rep("c0"), save="national"),
        Call("ope", "POST", "/broadcasts", 201, rep("c0"), save="mine"),
        Call("ope", "DELETE", "/repeats/{theirs}", 404),
        Call("ope", "DELETE", "/repeats/{national}", 403),  # from above: not theirs to stop
        Call("op", "DELETE", "/repeats/{mine}", 403),  # no emergency right
        Call("viewer", "DELETE", "/repeats/{mine}", 403),
        *calls("ope", "DELETE", ("/repeats/{mine}", 200), ("/repeats/{mine}", 409)),
    ],
    ("get", "/prepared"): [
        Call("op", "GET", "/prepared", 200, check=lambda d: len(d["prepared"]) == 5),
        Call("viewer", "GET", "/prepared", 200, check=lambda d: len(d["prepared"]) == 5),
    ],
    ("put", "/prepared/{id}"): [
        Call("op", "PUT", "/prepared/bao", 403, {"title": "B", "text": "b"}),
        Call("viewer", "PUT", "/prepared/bao", 403, {"title": "B", "text": "b"}),
        Call("admin", "PUT", "/prepared/bao", 400, {"title": "B"}),
        Call("admin", "PUT", "/prepared/bao", 200, {"title": "B", "text": "b"}),
    ],
    ("delete", "/prepared/{id}"): [
        *calls("op", "DELETE", ("/prepared/bao", 403), ("/prepared/nope", 403)),
        *calls("admin", "DELETE", ("/prepared/bao", 200), ("/prepared/bao", 404)),
    ],
    ("get", "/log"): [
        *calls("op", "GET", ("/log?zone=c1", 404), ("/log?since=soon", 400), ("/log", 200)),
        Call("viewer", "GET", "/log?zone=c1", 200),
    ],
    ("get", "/log.csv"): [
        *calls("op", "GET", ("/log.csv?zone=c1", 404), ("/log.csv?tz=Mars/Base", 400)),
        Call("op", "GET", "/log.csv?zone=v0", 200),
    ],
    ("get", "/audit"): [
        Call("op", "GET", "/audit", 403),
        Call("viewer", "GET", "/audit", 403),
        Call("admin", "GET", "/audit?limit=x", 400),
        Call("admin", "GET", "/audit", 200),  # admins only: no operator succeeds here
    ],
    ("post", "/media"): [
        Call("viewer", "POST", "/media?filename=a.wav", 403, WAV, "audio/wav"),
        Call("op", "POST", "/media?filename=a.mp3", 422, b"not audio" * 50, "audio/mpeg"),
        Call("op", "POST", "/media?filename=a.wav", 201, WAV, "audio/wav"),
    ],
    ("get", "/media"): [Call("op", "GET", "/media", 200), Call("viewer", "GET", "/media", 200)],
    ("delete", "/media/{id}"): [
        Call("viewer", "DELETE", "/media/{media}", 403),
        Call("op", "DELETE", "/media/nope", 404),
        Call("op", "DELETE", "/media/{media}", 200),
    ],
    ("post", "/whip"): [
        Call("op", "POST", "/whip?zones=c1", 403, OFFER, "application/sdp"),
        Call("viewer", "POST", "/whip?zones=c0", 403, OFFER, "application/sdp"),
        Call("op", "POST", "/whip?zones=c0&class=emergency", 403, OFFER, "application/sdp"),
        Call("op", "POST", "/whip?zones=c0", 415, OFFER, "text/plain"),
        Call("op", "POST", "/whip?zones=c0", 400, "v=1", "application/sdp"),
        Call("op", "POST", "/whip?zones=c0", 201, OFFER, "application/sdp"),
    ],
    ("delete", "/whip/{session}"): [
        Call("admin", "POST", "/whip?zones=c1", 201, OFFER, "application/sdp", save="s1"),
        Call("op", "POST", "/whip?zones=c0", 201, OFFER, "application/sdp", save="s0"),
        Call("op", "DELETE", "/whip/{s1}", 404),
        Call("viewer", "DELETE", "/whip/{s0}", 403),
        *calls("op", "DELETE", ("/whip/{s0}", 200), ("/whip/{s0}", 404)),
    ],
    ("patch", "/whip/{session}"): [Call("op", "PATCH", "/whip/0123456789abcdef", 405)],
    ("post", "/whep"): [
        Call("op", "POST", "/whep?zone=c1", 404, OFFER, "application/sdp"),
        Call("op", "POST", "/whep?zone=nowhere", 404, OFFER, "application/sdp"),
        Call("op", "POST", "/whep", 400, OFFER, "application/sdp"),
        Call("viewer", "POST", "/whep?zone=c1", 201, OFFER, "application/sdp"),
        Call("op", "POST", "/whep?zone=v0", 201, OFFER, "application/sdp"),
    ],
    ("delete", "/whep/{session}"): [
        Call("admin", "POST", "/whep?zone=c1", 201, OFFER, "application/sdp", save="s1"),
        Call("op", "POST", "/whep?zone=c0", 201, OFFER, "application/sdp", save="s0"),
        Call("op", "DELETE", "/whep/{s1}", 404),
        *calls("op", "DELETE", ("/whep/{s0}", 200), ("/whep/{s0}", 404)),
    ],
    ("patch", "/whep/{session}"): [Call("op", "PATCH", "/whep/0123456789abcdef", 405)],
    # CORS preflights (and plain OPTIONS) need no credentials: a browser sends none.
    **{
        ("options", path): [Call("anon", "OPTIONS", concrete, 204)]
        for path, concrete in (
            ("/whip", "/whip?zones=c0"),
            ("/whep", "/whep?zone=c0"),
            ("/whip/{session}", "/whip/0123456789abcdef"),
            ("/whep/{session}", "/whep/0123456789abcdef"),
        )
    },
    ("get", "/users"): [
        Call("op", "GET", "/users", 403),
        Call("viewer", "GET", "/users", 403),
        Call("admin", "GET", "/users", 200),  # admins only
    ],
    ("post", "/users"): [
        Call("op", "POST", "/users", 403, {"username": "x", "password": "p" * 8, "role": "viewer"}),
        Call(
            "admin",
            "POST",
            "/users",
            409,
            {"username": "op", "password": "p" * 8, "role": "viewer"},
        ),
        Call(
            "admin", "POST", "/users", 201, {"username": "x", "password": "p" * 8, "role": "viewer"}
        ),
    ],
    ("patch", "/users/{username}"): [
        Call("op", "PATCH", "/users/viewer", 403, {"password": "p" * 8}),
        Call("op", "PATCH", "/users/op", 403, {"emergency_right": True}),
        Call("admin", "PATCH", "/users/nobody", 404, {"disabled": True}),
        Call("admin", "PATCH", "/users/admin", 409, {"role": "viewer"}),
        Call(
            "op",
            "PATCH",
            "/users/op",
            200,
            {"password": "mật-khẩu-mới", "current_password": "mật-khẩu-dài"},
        ),
    ],
    ("delete", "/users/{username}"): [
        Call("op", "DELETE", "/users/viewer", 403),
        *calls("admin", "DELETE", ("/users/nobody", 404), ("/users/admin", 409)),
        Call("admin", "DELETE", "/users/viewer", 200),
    ],
    ("get", "/users/{username}/tokens"): [
        Call("op", "GET", "/users/viewer/tokens", 403),
        Call("admin", "GET", "/users/nobody/tokens", 404),
        Call("op", "GET", "/users/op/tokens", 200),
    ],
    ("post", "/users/{username}/tokens"): [
        Call("op", "POST", "/users/viewer/tokens", 403, {"label": "x"}),
        Call("op", "POST", "/users/op/tokens", 400, {"label": 7}),
        Call("op", "POST", "/users/op/tokens", 201, {"label": "OBS"}),
    ],
    ("delete", "/users/{username}/tokens/{id}"): [
        Call("op", "DELETE", "/users/viewer/tokens/{viewer_token}", 403),
        Call("op", "DELETE", "/users/op/tokens/{viewer_token}", 404),
        Call("op", "DELETE", "/users/op/tokens/{op_token}", 200),
    ],
    ("get", "/reports/endpoints"): [
        Call("op", "GET", "/reports/endpoints?since=0&until=86400&zone=c1", 404),
        Call("op", "GET", "/reports/endpoints?until=86400", 400),
        Call(
            "op",
            "GET",
            "/reports/endpoints?since=0&until=86400",
            200,
            check=lambda d: {e["zone"] for e in d["endpoints"]} == {"c0"},
        ),
        Call("viewer", "GET", "/reports/endpoints?since=0&until=86400&zone=c1", 200),
    ],
    ("get", "/reports/zones"): [
        Call("op", "GET", "/reports/zones?since=0&until=86400&zone=p", 404),
        Call("op", "GET", "/reports/zones?since=0&until=86400&format=pdf", 400),
        Call(
            "op",
            "GET",
            "/reports/zones?since=0&until=86400",
            200,
            check=lambda d: sorted(z["zone"] for z in d["zones"]) == ["c0", "v0"],
        ),
        Call("viewer", "GET", "/reports/zones?since=0&until=86400&format=csv", 200),
    ],
    ("get", "/webhooks"): [
        Call("op", "GET", "/webhooks", 403),
        Call("viewer", "GET", "/webhooks", 403),
        Call("admin", "GET", "/webhooks", 200),  # admins only
    ],
    ("post", "/webhooks"): [
        Call("op", "POST", "/webhooks", 403, HOOK),
        Call("admin", "POST", "/webhooks", 400, {**HOOK, "url": "file:///etc/passwd"}),
        Call("admin", "POST", "/webhooks", 201, HOOK),
    ],
    ("delete", "/webhooks/{id}"): [
        Call("admin", "POST", "/webhooks", 201, HOOK, save="hook"),
        Call("op", "DELETE", "/webhooks/{hook}", 403),
        Call("admin", "DELETE", "/webhooks/999", 404),
        *calls("admin", "DELETE", ("/webhooks/{hook}", 200), ("/webhooks/{hook}", 404)),
    ],
    ("get", "/webhooks/{id}/deliveries"): [
        Call("admin", "POST", "/webhooks", 201, HOOK, save="hook"),
        Call("viewer", "GET", "/webhooks/{hook}/deliveries", 403),
        Call("admin", "GET", "/webhooks/nope/deliveries", 404),
        Call("admin", "GET", "/webhooks/{hook}/deliveries?state=lost", 400),
        Call("admin", "GET", "/webhooks/{hook}/deliveries", 200),
    ],
    ("post", "/webhooks/{id}/test"): [
        Call("admin", "POST", "/webhooks", 201, HOOK, save="hook"),
        Call("op", "POST", "/webhooks/{hook}/test", 403),
        Call("admin", "POST", "/webhooks/999/test", 404),
        Call("admin", "POST", "/webhooks/{hook}/test", 202),
    ],
    ("get", "/schedules"): [
        Call("admin", "POST", "/schedules", 201, sch("p1", "c1")),
        Call("op", "GET", "/schedules", 200, check=lambda d: d["schedules"] == []),
        Call(
            "viewer",
            "GET",
            "/schedules",
            200,
            check=lambda d: [s["id"] for s in d["schedules"]] == ["p1"],
        ),
    ],
    ("post", "/schedules"): [
        Call("viewer", "POST", "/schedules", 403, sch("s1", "c0")),
        Call("op", "POST", "/schedules", 403, sch("s1", "c1")),
        Call("op", "POST", "/schedules", 403, {**sch("s1", "c0"), "zone": None}),
        Call("op", "POST", "/schedules", 404, sch("s1", "nowhere")),
        Call("op", "POST", "/schedules", 422, {**sch("s1", "c0"), "rrule": "FREQ=SECONDLY"}),
        Call("op", "POST", "/schedules", 201, sch("s1", "v0"), check=lambda d: d["zone"] == "c0"),
        Call("op", "POST", "/schedules", 409, sch("s1", "c0")),
    ],
    ("get", "/schedules/conflicts"): [
        Call("op", "GET", "/schedules/conflicts?until=86400", 400),
        Call("op", "GET", f"/schedules/conflicts?since=0&until={40 * 86400}", 422),
        Call("op", "GET", "/schedules/conflicts?since=0&until=86400", 200),
        Call("viewer", "GET", "/schedules/conflicts?since=0&until=86400", 200),
    ],
    ("get", "/schedules/{id}"): [
        Call("admin", "POST", "/schedules", 201, sch("s1", "c1")),
        Call("op", "GET", "/schedules/s1", 404),
        Call(
            "viewer", "GET", "/schedules/s1", 200, check=lambda d: d["targets"]["zones"] == ["c1"]
        ),
    ],
    ("patch", "/schedules/{id}"): [
        Call("admin", "POST", "/schedules", 201, sch("c1s", "c1")),
        Call("admin", "POST", "/schedules", 201, {**sch("prov", "c0"), "zone": "p"}),
        Call("op", "POST", "/schedules", 201, sch("mine", "c0")),
        Call("op", "PATCH", "/schedules/c1s", 404, {"name": "x"}),
        Call("op", "PATCH", "/schedules/prov", 403, {"name": "x"}),  # seen, ranks from above
        Call("viewer", "PATCH", "/schedules/mine", 403, {"name": "x"}),
        Call("op", "PATCH", "/schedules/mine", 403, {"targets": {"zones": ["c1"]}}),
        Call("op", "PATCH", "/schedules/mine", 400, {"id": "other"}),
        Call("op", "PATCH", "/schedules/mine", 404, {"items": [{"type": "media", "id": "0" * 16}]}),
        Call("op", "PATCH", "/schedules/mine", 200, {"name": "Chiều", "enabled": False}),
    ],
    ("delete", "/schedules/{id}"): [
        Call("op", "POST", "/schedules", 201, sch("mine", "c0")),
        Call("viewer", "DELETE", "/schedules/mine", 403),
        Call("op", "DELETE", "/schedules/nope", 404),
        *calls("op", "DELETE", ("/schedules/mine", 200), ("/schedules/mine", 404)),
    ],
    ("get", "/schedules/{id}/preview"): [
        Call("op", "POST", "/schedules", 201, sch("mine", "c0")),
        Call("op", "GET", "/schedules/mine/preview?n=0", 400),
        Call("op", "GET", "/schedules/nope/preview", 404),
        Call(
            "op", "GET", "/schedules/mine/preview?n=3", 200, check=lambda d: len(d["starts"]) == 3
        ),
    ],
    ("get", "/bulletins"): [
        Call("admin", "POST", "/bulletins", 201, nb("c1")),
        Call("op", "GET", "/bulletins", 200, check=lambda d: d["bulletins"] == []),
        Call("viewer", "GET", "/bulletins", 200, check=lambda d: len(d["bulletins"]) == 1),
        Call("op", "GET", "/bulletins?state=lost", 400),
    ],
    ("post", "/bulletins"): [
        Call("op", "POST", "/bulletins", 403, nb("c1")),
        Call("viewer", "POST", "/bulletins", 403, nb("c0")),
        Call("op", "POST", "/bulletins", 403, nb("c0", "emergency")),  # no emergency right
        Call("op", "POST", "/bulletins", 404, nb("nowhere")),
        Call("op", "POST", "/bulletins", 400, nb("c0", "urgent")),
        Call("ope", "POST", "/bulletins", 201, nb("v0", "emergency")),
        Call("op", "POST", "/bulletins", 201, nb("c0")),
    ],
    ("post", "/bulletins/cap"): [
        Call("op", "POST", "/bulletins/cap", 415, "<alert/>", "text/plain"),
        Call("op", "POST", "/bulletins/cap", 422, "<alert>", "application/cap+xml"),
        Call("op", "POST", "/bulletins/cap", 413, b" " * (256 * 1024 + 1), "application/xml"),
        Call("op", "POST", "/bulletins/cap", 403, cap_to("c0"), "application/cap+xml"),
        Call("ope", "POST", "/bulletins/cap", 403, cap_to("c1"), "application/cap+xml"),
        Call("viewer", "POST", "/bulletins/cap", 403, cap_to("c0"), "application/cap+xml"),
        Call("ope", "POST", "/bulletins/cap", 201, cap_to("c0"), "application/cap+xml"),
        Call("ope", "POST", "/bulletins/cap", 409, cap_to("c0"), "application/cap+xml"),
        Call("ope", "POST", "/bulletins/cap", 200, cap_to("nowhere", "T-2"), "application/xml"),
    ],
    ("get", "/bulletins/{id}"): [
        Call("admin", "POST", "/bulletins", 201, nb("c1"), save="theirs"),
        Call("admin", "POST", "/bulletins", 201, nb("c0"), save="mine"),
        *calls("op", "GET", ("/bulletins/{theirs}", 404), ("/bulletins/nope", 404)),
        Call("viewer", "GET", "/bulletins/{theirs}", 200),
        Call("op", "GET", "/bulletins/{mine}", 200),
    ],
    ("get", "/bulletins/{id}/audio"): [
        Call("admin", "POST", "/bulletins", 201, nb("c1"), save="theirs"),
        Call("admin", "POST", "/bulletins", 201, nb("c0"), save="mine"),
        *calls("op", "GET", ("/bulletins/{theirs}/audio", 404), ("/bulletins/nope/audio", 404)),
        Call("viewer", "GET", "/bulletins/{theirs}/audio", 200),
        Call("op", "GET", "/bulletins/{mine}/audio", 200),
    ],
    ("post", "/bulletins/{id}/schedule"): [
        Call("admin", "POST", "/bulletins", 201, nb("c1"), save="theirs"),
        Call("admin", "POST", "/bulletins", 201, nb("c0"), save="mine"),
        Call("admin", "POST", "/bulletins", 201, nb("c0", "priority"), save="urgent"),
        Call("op", "POST", "/bulletins/{theirs}/schedule", 404, {}),
        Call("viewer", "POST", "/bulletins/{mine}/schedule", 403, {}),
        Call("op", "POST", "/bulletins/{urgent}/schedule", 409, {}),
        Call("op", "POST", "/bulletins/{mine}/schedule", 400, {"at": "noon"}),
        Call("op", "POST", "/bulletins/{mine}/schedule", 200, {"at": 4_000_000_000}),
        Call("op", "POST", "/bulletins/{mine}/schedule", 409, {}),
    ],
    ("post", "/bulletins/{id}/cancel"): [
        Call("admin", "POST", "/bulletins", 201, nb("c1"), save="theirs"),
        Call("admin", "POST", "/bulletins", 201, nb("c0", "emergency"), save="alarm"),
        Call("admin", "POST", "/bulletins", 201, nb("c0"), save="mine"),
        Call("op", "POST", "/bulletins/{theirs}/cancel", 404),
        Call("viewer", "POST", "/bulletins/{mine}/cancel", 403),
        Call("op", "POST", "/bulletins/{alarm}/cancel", 403),  # no emergency right
        Call("ope", "POST", "/bulletins/{alarm}/cancel", 200),
        *calls("op", "POST", ("/bulletins/{mine}/cancel", 200), ("/bulletins/{mine}/cancel", 409)),
    ],
}
PUBLIC = {("get", "/openapi.json"), ("get", "/speaker")} | {
    ("options", p) for p in ("/whip", "/whep", "/whip/{session}", "/whep/{session}")
}


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]
    ids: dict[str, str] = field(default_factory=dict)


async def offer(direction: str) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def send(world: World, c: Call) -> tuple[int, Any]:
    client, headers = world.client, world.headers[c.who]
    path = "/api/v1" + c.path.format(**world.ids)
    if c.ws:
        ws = await client.ws_connect(path, headers=headers)
        await ws.close()
        return 101, None
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    body = c.body
    if body == OFFER:
        body = await offer("sendonly" if "/whip" in path else "recvonly")
    if isinstance(body, dict):
        kwargs["json"] = body
    elif body is not None:
        kwargs["data"] = body.encode() if isinstance(body, str) else body
        kwargs["headers"]["Content-Type"] = c.content_type
    async with client.request(c.method, path, **kwargs) as resp:
        is_json = resp.content_type == "application/json"
        if resp.content_type.startswith("audio/"):  # a bulletin's preview
            return resp.status, await resp.read()
        data = await (resp.json() if is_json else resp.text())
        if c.save and "Location" in resp.headers:
            world.ids[c.save] = resp.headers["Location"].rsplit("/", 1)[-1]
        elif c.save:  # a repeating emergency: POST /broadcasts answers its repeat
            world.ids[c.save] = data["repeat"]["id"]
        return resp.status, data


@pytest.fixture
async def world(aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    config = tree_config(tmp_path, rtp=("127.0.0.1:9",))
    client = await aiohttp_client(create_app(config))
    w = World(client, {"admin": AUTH, "anon": {}})
    w.headers["op"] = await account(client.app, "op", "operator", "c0")
    w.headers["ope"] = await account(client.app, "ope", "operator", "c0", emergency_right=True)
    w.headers["viewer"] = await account(client.app, "viewer", "viewer")
    store = client.app[auth.STORE]
    w.ids["op_token"] = str((await store.users.tokens("op"))[0].id)
    w.ids["viewer_token"] = str((await store.users.tokens("viewer"))[0].id)
    setup = [
        Call("admin", "POST", "/zones", 201, {"id": "v0", "name": "Thôn 0", "parent": "c0"}),
        Call("admin", "POST", "/zones", 201, {"id": "v1", "name": "Thôn 1", "parent": "c1"}),
        Call(
            "admin",
            "POST",
            "/endpoints",
            201,
            {"id": "rtp1", "name": "R", "zone": "c1", "kind": "rtp", "address": "127.0.0.1:9"},
        ),
        Call("op", "POST", "/broadcasts", 201, bc("c0", name="bc0")),  # from c0: op may stop it
        Call("admin", "POST", "/broadcasts", 201, bc("c1", name="bc1")),
        Call("op", "POST", "/media?filename=m.wav", 201, WAV, "audio/wav"),  # c0's media
    ]
    for c in setup:
        status, data = await send(w, c)
        assert status == c.status, data
        if c.path == "/broadcasts":  # ids are the server's: {bc0} and {bc1} in paths
            w.ids[c.body["name"]] = data["id"]
    w.ids["media"] = data["id"]
    return w


def documented(method: str, template: str) -> set[int]:
    responses = document()["paths"][template][method]["responses"]
    return {int(code) for code in responses}


def test_the_table_covers_every_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(ROUTES) == routes_of(create_app(tree_config(tmp_path)))
    for route, cs in ROUTES.items():
        assert any(200 <= c.status < 300 or c.status == 101 for c in cs) or route[1].endswith(
            "{session}"
        ), f"{route}: no call succeeds"


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0].upper()} {r[1]}")
async def test_route(world: World, route: tuple[str, str]) -> None:
    """Without credentials 401 (unless public); then the route's calls, in order."""
    method, template = route
    first = ROUTES[route][0]
    if route not in PUBLIC:
        status, data = await send(world, replace(first, who="anon", ws=False, save=None))
        assert status == 401, data
        assert data["error"]["code"] == "unauthorized"
    for c in ROUTES[route]:
        status, data = await send(world, c)
        assert status == c.status, (c, data)
        # a call that sets the stage for another route (POST /whip before DELETE, POST
        # /webhooks before POST /webhooks/{id}/test) is its own
        setup = c.method.lower() != method or c.save is not None
        called = c.path.split("?")[0] if setup else template
        allowed = documented(c.method.lower(), called)
        assert status in allowed, f"{c.method} {called} answered {status}, undocumented"
        if status >= 400:
            assert data["error"]["code"] and data["error"]["message"], data
        if c.check is not None:
            assert c.check(data), data


JSON_ROUTES = sorted(
    (m, p)
    for p, item in document()["paths"].items()
    for m, operation in item.items()
    if "application/json" in operation.get("requestBody", {}).get("content", {})
)
CONCRETE = {"{id}": "c0-e0", "{username}": "op"}


def concrete(template: str) -> str:
    path = template.replace("/zones/{id}", "/zones/v0")
    for key, value in CONCRETE.items():
        path = path.replace(key, value)
    return path


@pytest.mark.parametrize("route", JSON_ROUTES, ids=lambda r: f"{r[0].upper()} {r[1]}")
async def test_json_routes_want_json(world: World, route: tuple[str, str]) -> None:
    """415 for another content type, 400 for a body that is not a JSON object."""
    method, template = route
    path = concrete(template)
    cases = [
        (b"id=x", "application/x-www-form-urlencoded", 415),
        (b"{", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
    ]
    for body, content_type, status in cases:
        got, data = await send(
            world, Call("admin", method.upper(), path, status, body, content_type)
        )
        assert got == status, data
        assert status in documented(method, template)


async def test_upload_larger_than_the_limit_is_413(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tree_config(tmp_path)
    config = with_changes(config, web=with_changes(config.web, max_upload_mb=1))
    client = await aiohttp_client(create_app(config))
    op = await account(client.app, "op", "operator", "c0")
    resp = await client.post(
        "/api/v1/media?filename=big.wav", data=io.BytesIO(b"\0" * (1024**2 + 1)), headers=op
    )
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "too_large"
    assert 413 in documented("post", "/media")
