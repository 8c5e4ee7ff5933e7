"""The error hierarchy: one root, LoaError; subclasses also inherit the stdlib type a caller
would catch, and carry a stable ``code`` the web layer turns into JSON."""

from __future__ import annotations


class LoaError(Exception):
    """Root of every error loa raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class ConfigError(LoaError, ValueError):
    code = "bad_config"
    status = 400


class MissingDependency(LoaError, RuntimeError):
    """A system package loa needs is not installed; the message names it."""

    code = "missing_dependency"
    status = 500


class MediaError(LoaError, ValueError):
    """Audio that cannot be opened or decoded; the message names the file and the reason."""

    code = "bad_media"
    status = 422


class SourceError(LoaError, RuntimeError):
    code = "source_failed"
    status = 502


class SourceTimeout(SourceError, TimeoutError):
    code = "source_timeout"


class TtsError(SourceError):
    code = "tts_failed"


class NotFound(LoaError, LookupError):
    code = "not_found"
    status = 404


class Conflict(LoaError):
    """A request clashes with current state, e.g. an exclusive broadcast whose targets are held."""

    code = "conflict"
    status = 409


class Unauthorized(LoaError, PermissionError):
    code = "unauthorized"
    status = 401


class Forbidden(LoaError, PermissionError):
    code = "forbidden"
    status = 403


class BadRequest(LoaError, ValueError):
    code = "bad_request"
    status = 400
