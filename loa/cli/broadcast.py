"""`loa broadcast start|stop|list`: drive a running server through its HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from loa.errors import LoaError

CLASSES = ("background", "scheduled", "priority", "live", "emergency")


class ApiError(LoaError):
    code = "api_error"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "broadcast", help="start, stop or list broadcasts on a running server", description=__doc__
    )
    p.add_argument(
        "--server",
        default=os.environ.get("LOA_SERVER", "http://127.0.0.1:8080"),
        help="server base URL (default $LOA_SERVER or http://127.0.0.1:8080)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("LOA_ADMIN_TOKEN"),
        help="API token (default $LOA_ADMIN_TOKEN)",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    start = actions.add_parser("start", help="start a broadcast")
    src = start.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", type=Path, help="an audio file (uploaded to the media library)")
    src.add_argument("--media", help="a media library id")
    src.add_argument("--tone", type=float, metavar="HZ", help="a test tone of this frequency")
    src.add_argument("--tts", metavar="TEXT", help="text to speak")
    src.add_argument("--url", help="a stream to relay (http, https, HLS, RTSP)")
    start.add_argument(
        "--voice", default="vi", help="TTS voice (vi, vi-vn-x-central, vi-vn-x-south)"
    )
    start.add_argument("--duration", type=float, help="seconds (tone only; default endless)")
    start.add_argument("--zone", action="append", default=[], help="target zone (repeatable)")
    start.add_argument(
        "--endpoint", action="append", default=[], help="target endpoint (repeatable)"
    )
    start.add_argument("--class", dest="klass", choices=CLASSES, default="live")
    start.add_argument("--origin-zone", help="the zone the broadcast comes from (ranks it)")
    start.add_argument(
        "--interrupt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="preempt lower broadcasts now (default: by class)",
    )
    start.add_argument(
        "--exclusive", action="store_true", help="refuse unless every target is free"
    )
    start.add_argument("--expires-at", help="ISO time or Unix seconds after which it may not start")
    start.add_argument(
        "--chime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="attention chime first (default: emergencies only)",
    )
    start.add_argument("--name", help="what the log calls it")
    start.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="run again with the same KEY (and options): the same broadcast, not a second one",
    )
    start.set_defaults(func=cmd_start)

    stop = actions.add_parser("stop", help="stop a broadcast")
    stop.add_argument("id")
    stop.set_defaults(func=cmd_stop)

    lst = actions.add_parser("list", help="list active broadcasts")
    lst.add_argument("--json", action="store_true", help="print raw JSON")
    lst.set_defaults(func=cmd_list)


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    data: bytes | None = None,
    content_type: str = "application/json",
) -> Any:
    if not args.token:
        raise ApiError("no API token: pass --token or set LOA_ADMIN_TOKEN")
    url = args.server.rstrip("/") + "/api/v1" + path
    payload = json.dumps(body).encode() if body is not None else data
    req = urllib.request.Request(url, data=payload, method=method)
    req.add_header("Authorization", f"Bearer {args.token}")
    if payload is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            raise ApiError(f"{exc.code} {err['code']}: {err['message']}") from None
        except (ValueError, KeyError, TypeError):
            raise ApiError(f"{exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach {args.server}: {exc.reason}") from None


def parse_time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).astimezone().timestamp()
    except ValueError:
        raise ApiError(f"--expires-at: not a time: {value!r}") from None


def source_of(args: argparse.Namespace) -> dict[str, Any]:
    if args.file is not None:
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise ApiError(f"cannot read {args.file}: {exc.strerror}") from None
        name = urllib.parse.quote(args.file.name)
        info = call(
            args,
            "POST",
            f"/media?filename={name}",
            data=data,
            content_type="application/octet-stream",
        )
        return {"type": "media", "id": info["id"]}
    if args.media:
        return {"type": "media", "id": args.media}
    if args.tone is not None:
        return {"type": "tone", "freq_hz": args.tone, "duration_s": args.duration}
    if args.tts:
        return {"type": "tts", "text": args.tts, "voice": args.voice}
    return {"type": "url", "url": args.url}


def cmd_start(args: argparse.Namespace) -> int:
    if not args.zone and not args.endpoint:
        raise ApiError("give at least one --zone or --endpoint")
    body: dict[str, Any] = {
        "source": source_of(args),
        "targets": {"zones": args.zone, "endpoints": args.endpoint},
        "class": args.klass,
    }
    for key, value in (
        ("origin_zone", args.origin_zone),
        ("interrupt", args.interrupt),
        ("chime", args.chime),
        ("name", args.name),
        ("idempotency_key", args.idempotency_key),
    ):
        if value is not None:
            body[key] = value
    if args.exclusive:
        body["exclusive"] = True
    if args.expires_at:
        body["expires_at"] = parse_time(args.expires_at)
    bc = call(args, "POST", "/broadcasts", body)
    print(f"{bc['id']}\t{bc['state']}\t{len(bc['listeners'])} endpoints\t{bc['what']}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    entry = call(args, "DELETE", f"/broadcasts/{urllib.parse.quote(args.id)}")
    print(f"{entry['id']}\t{entry['state']}\theard by {entry['endpoints_heard']} endpoints")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/broadcasts")
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    for bc in data["broadcasts"]:
        heard = f"{len(bc['listeners'])} endpoints"
        print(f"{bc['id']}\t{bc['class']}\t{bc['state']}\t{heard}\t{bc['what']}")
    if not data["broadcasts"]:
        print("no active broadcasts")
    return 0
