"""How ``loa serve`` and ``loa demo`` run the app: the request-head timeout and an access log
that never records tokens.

Head timeout: aiohttp has no knob of that name, but its ``keepalive_timeout`` is armed when a
connection is made and re-armed after each response, and it closes the connection when it
fires while the server still waits for a complete request head (``RequestHandler.
_process_keepalive``); bytes that trickle in do not re-arm it. So ``keepalive_timeout =
web.header_timeout_s`` closes a connection that sends nothing, and a slowloris that never
finishes its request line or headers, that many seconds after it connected (or after its
previous response). It also bounds how long an idle keep-alive connection stays open;
clients reconnect. It does not bound a request body or a response: the Icecast source
mount has its own timeouts, uploads their size limit.

Access log: aiohttp's ``AccessLogger`` with every formatted value passed through
``redact_tokens`` (the request line and the Referer carry ``?token=`` for listen mounts and
/metrics), and ``%a`` showing the real client behind a trusted proxy (``loa.web.proxies``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from loa.config import WebConfig
from loa.web.proxies import PEER

REDACTED = "[redacted]"
# A query parameter: its separator, name and value (up to the next separator, space or quote).
_PARAM = re.compile(r"([?&;])([^=&;#\s\"]*)=([^&;#\s\"]*)")


def _redact_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if "token" in unquote(name).lower() and value:
        return f"{sep}{name}={REDACTED}"
    return match.group(0)


def redact_tokens(text: str) -> str:
    """``text`` (a request line, a URL, a header) with the value of every query parameter
    whose name contains ``token`` (``token``, ``admin_token``, ``tok%65n`` …) replaced."""
    if "=" not in text:
        return text
    return _PARAM.sub(_redact_param, text)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger (same format, same ``extra`` fields), driven by aiohttp once
    per response, whose values never carry a token."""

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        out = []
        for key, value in super()._format_line(request, response, time):
            if key == "remote_address" and request is not None and PEER in request:
                # ``request`` is the one the connection made; the proxy middleware recorded
                # the client it stood for on it.
                value = request[PEER]
            elif isinstance(value, str):
                value = redact_tokens(value)
            out.append((key, value))
        return out


def run_options(web: WebConfig) -> dict[str, Any]:
    """Keyword arguments for ``web.run_app`` (or ``AppRunner``) that apply ``[web]``."""
    return {
        "keepalive_timeout": float(web.header_timeout_s),
        "access_log_class": RedactingAccessLogger,
    }
