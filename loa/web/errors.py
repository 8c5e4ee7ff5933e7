"""Errors to HTTP: the status of each error class, for the error middleware and the audit.

The layers below raise ``LoaError``s that know nothing of HTTP (a code, a message, fields);
this table is the one place that says what each means on the wire. A class not listed
takes the status of its nearest listed base, so a new subclass of ``NotFound`` is a 404
without touching this file; anything unlisted is a 500."""

from __future__ import annotations

from loa.bulletins.cap import CapError
from loa.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    LoaError,
    MediaError,
    MissingDependency,
    NotFound,
    SourceError,
    TooLarge,
    TooManySessions,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    UnsupportedOffer,
)
from loa.store.db import StoreError
from loa.streamer.duration import TooLong
from loa.streamer.targets import TargetRefused
from loa.webhooks import BadSignature

STATUS: dict[type[LoaError], int] = {
    LoaError: 500,
    BadRequest: 400,
    ConfigError: 400,
    Unauthorized: 401,
    BadSignature: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    TooLong: 413,
    UnsupportedMediaType: 415,
    MediaError: 422,
    CapError: 422,
    UnsupportedOffer: 422,
    Unprocessable: 422,
    TargetRefused: 422,
    MissingDependency: 500,
    SourceError: 502,
    StoreError: 503,
    TooManySessions: 503,
}


def http_status(exc: LoaError) -> int:
    """The HTTP status for ``exc``: its class's, or its nearest listed base's."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500
