"""The reader's language for what the server writes itself (CSV downloads): which language,
and the UI's own texts for it (``static/i18n/<lang>.json``), so a download says what the
page says."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

from aiohttp import web

from loa.web.pages import DEFAULT_LANG, STATIC

LANGS = ("vi", "en")


def reader_lang(request: web.Request, lang: str | None) -> str:
    """``?lang=`` if given, else the first of ``Accept-Language`` (by its q weights) that the
    UI speaks, else Vietnamese."""
    if lang is not None:
        return lang
    weighted: list[tuple[float, int, str]] = []
    for n, part in enumerate(request.headers.get("Accept-Language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and q > 0:
            weighted.append((-q, n, primary))
    return min(weighted)[2] if weighted else DEFAULT_LANG


@functools.cache
def _texts(lang: str) -> Mapping[str, str]:
    texts: dict[str, str] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return texts


@functools.cache
def texts(lang: str, prefix: str) -> Mapping[str, str]:
    """The UI's texts in ``lang`` whose keys start with ``prefix``, keyed by the rest."""
    return {k[len(prefix) :]: v for k, v in _texts(lang).items() if k.startswith(prefix)}
