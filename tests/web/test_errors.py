"""Errors and reasons know no HTTP and no language below the web layer: the web layer's table
maps errors to statuses and words the core's reasons for the API."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import loa
from loa.bulletins.cap import CapError
from loa.errors import (
    BadRequest,
    Conflict,
    LoaError,
    MediaError,
    NotFound,
    SourceTimeout,
    TooLarge,
    TooManySessions,
    UnsupportedMediaType,
    UnsupportedOffer,
)
from loa.relay.core.priority import REASONS, Reason
from loa.store.db import SchemaTooNew
from loa.web.auth import CsrfError
from loa.web.errors import http_status
from loa.web.reasons import ENGLISH, english, why_json
from loa.webhooks import BadSignature


def every_error() -> list[type[LoaError]]:
    for info in pkgutil.walk_packages(loa.__path__, "loa."):
        importlib.import_module(info.name)
    found, todo = [], [LoaError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_no_error_below_the_web_layer_carries_an_http_status() -> None:
    errors = every_error()
    assert len(errors) > 20
    below_web = [c for c in errors if not c.__module__.startswith("loa.web")]
    offenders = [
        f"{c.__module__}.{c.__qualname__}"
        for c in below_web
        if {"status", "http_status"} & set(vars(c))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LoaError("x"), 500),
        (BadRequest("x"), 400),
        (NotFound("x"), 404),
        (Conflict("x", holder="a"), 409),
        (TooLarge("x"), 413),
        (UnsupportedMediaType("x"), 415),
        (MediaError("x"), 422),
        (UnsupportedOffer("x"), 422),
        (CapError("x"), 422),
        (SourceTimeout("x"), 502),  # via SourceError
        (SchemaTooNew("x"), 503),  # via StoreError
        (TooManySessions("x"), 503),
        (BadSignature("x"), 401),
        (CsrfError("x"), 403),  # via Forbidden
    ],
)
def test_each_error_maps_to_its_status_or_its_nearest_base(error: LoaError, status: int) -> None:
    assert http_status(error) == status


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (Reason("holds"), "holds the floor"),
        (Reason("equal_rank", (("holder", "a"),)), "equal rank with a, which holds the floor"),
        (
            Reason(
                "lower_class", (("holder", "a"), ("class", "scheduled"), ("holder_class", "live"))
            ),
            "class scheduled ranks below a's live",
        ),
        (
            Reason("lower_origin", (("holder", "a"), ("level", 0), ("holder_level", -1))),
            "same class as a but from a lower origin (zone level 0 vs national)",
        ),
    ],
)
def test_the_web_layer_words_the_cores_reasons(reason: Reason, words: str) -> None:
    assert english(reason).startswith(words)
    assert why_json(reason)["why_code"] == reason.code


def test_every_reason_code_has_words() -> None:
    assert set(ENGLISH) == REASONS
    with pytest.raises(ValueError, match="unknown reason code 'bored'"):
        Reason("bored")
