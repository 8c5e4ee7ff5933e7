"""schemathesis hooks for tests/web/test_fuzz.py (loaded by ``st`` via SCHEMATHESIS_HOOKS):
nothing the fuzzer makes up may reach past loopback. Every stream URL, webhook URL and RTP
address a generated body carries is pointed at 127.0.0.1 (a closed port) before it is sent;
schemathesis re-judges the edited case, so a valid value stays valid."""

from __future__ import annotations

import re
from typing import Any

import schemathesis

URL = re.compile(r"^(?:https?|rtsps?)://", re.IGNORECASE)
LOOPBACK_URL = "http://127.0.0.1:9/fuzz"
LOOPBACK_ADDRESS = "127.0.0.1:9"


def to_loopback(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "url" and isinstance(item, str) and URL.match(item):
                out[key] = LOOPBACK_URL
            elif key == "address" and isinstance(item, str):
                out[key] = LOOPBACK_ADDRESS
            else:
                out[key] = to_loopback(item)
        return out
    if isinstance(value, list):
        return [to_loopback(v) for v in value]
    return value


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict | list):
        case.body = to_loopback(case.body)
