"""The error hierarchy: one root, LoaError; subclasses also inherit the stdlib type a caller
would catch, and carry a stable ``code`` and their parameters (``fields``).

Nothing here knows HTTP: the web layer maps each class to a status (``loa.web.errors``) and
the pages word each code in the user's language (the ``errors`` texts of ``web/static/i18n``).
The English ``message`` is for logs, the command line and API clients that read it."""

from __future__ import annotations


class LoaError(Exception):
    """Root of every error loa raises on purpose."""

    code = "error"

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class ConfigError(LoaError, ValueError):
    code = "bad_config"


class MissingDependency(LoaError, RuntimeError):
    """A system package loa needs is not installed; the message names it."""

    code = "missing_dependency"


class MediaError(LoaError, ValueError):
    """Audio that cannot be opened or decoded; the message names the file and the reason."""

    code = "bad_media"


class SourceError(LoaError, RuntimeError):
    code = "source_failed"


class SourceTimeout(SourceError, TimeoutError):
    code = "source_timeout"


class TtsError(SourceError):
    code = "tts_failed"


class NotFound(LoaError, LookupError):
    code = "not_found"


class Conflict(LoaError):
    """A request clashes with current state, e.g. an exclusive broadcast whose targets are held."""

    code = "conflict"


class StaleLeader(Conflict):
    """A leader's write carries a fencing token older than one the store has already seen:
    another leader has written since (``token``, ``fence``)."""

    code = "stale_leader"


class InPast(Conflict):
    """A time that has passed where a future one is needed (``field`` names it)."""

    code = "in_past"


class BulletinRefused(Conflict):
    """A bulletin cannot do what was asked in its state: ``reason`` (one of
    ``BULLETIN_REASONS``) says why, ``bulletin`` names it."""

    code = "bulletin_refused"


BULLETIN_REASONS = frozenset(
    {
        # its state: it cannot move from there to the state asked for
        *("inbox", "scheduled", "on_air", "done", "cancelled", "expired", "failed"),
        "not_normal",  # priority and emergency bulletins go on air when they arrive
        "expires_first",  # it expires before the chosen time: it would never play
    }
)


class Unauthorized(LoaError, PermissionError):
    code = "unauthorized"


class Forbidden(LoaError, PermissionError):
    code = "forbidden"


class BadRequest(LoaError, ValueError):
    code = "bad_request"


class TooLarge(LoaError, ValueError):
    """More bytes than a limit allows (an upload, an SDP offer)."""

    code = "too_large"


class UnsupportedMediaType(LoaError, ValueError):
    """A body of a type this resource does not take; the message names what it needs."""

    code = "unsupported_media_type"


class UnsupportedOffer(LoaError, ValueError):
    """Well-formed input that asks for nothing we can do (an SDP offer without Opus audio)."""

    code = "unsupported_offer"


class TooManySessions(LoaError):
    """A limit of concurrent sessions is reached; retry later."""

    code = "too_many_sessions"


class Unprocessable(LoaError):
    """Well formed, but unusable (a URL that does not parse, an impossible rule)."""

    code = "unprocessable"
