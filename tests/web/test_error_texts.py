"""Every error code has words in both languages, and the pages word an API error's code with
its parameters (in Chromium: the page's own api.js and i18n.js, on a real server)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from loa.errors import BULLETIN_REASONS
from loa.schedule.rules import RULE_REASONS
from loa.store.bulletins import STATES
from loa.web.app import create_app
from loa.web.pages import STATIC
from tests.conftest import tree_config
from tests.web.test_browser import browser, in_thread
from tests.web.test_errors import every_error

__all__ = ["browser"]  # the Chromium fixture


def dictionaries() -> dict[str, dict[str, str]]:
    return {
        lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
        for lang in ("vi", "en")
    }


def test_every_error_code_has_words_in_both_languages() -> None:
    codes = {cls.code for cls in every_error()}
    for lang, texts in dictionaries().items():
        missing = sorted(c for c in codes if f"error.{c}" not in texts)
        assert missing == [], lang


def test_a_parameter_text_belongs_to_a_code_and_names_its_parameter() -> None:
    for lang, texts in dictionaries().items():
        for key, text in texts.items():
            parts = key.split(".")
            if parts[0] != "error" or len(parts) == 2:
                continue
            assert f"error.{parts[1]}" in texts, (lang, key)
            if len(parts) == 3:
                assert parts[2] in re.findall(r"\{(\w+)\}", text) or parts[2] == "missing", key
            else:  # error.<code>.reason.<reason>
                assert len(parts) == 4 and parts[2] == "reason", key


def test_every_bulletin_state_is_a_reason_a_refusal_can_give() -> None:
    assert set(STATES) <= BULLETIN_REASONS


@pytest.mark.parametrize(
    ("code", "reasons"), [("bad_rrule", RULE_REASONS), ("bulletin_refused", BULLETIN_REASONS)]
)
def test_every_reason_of_a_code_has_words_in_both_languages(
    code: str, reasons: frozenset[str]
) -> None:
    for lang, texts in dictionaries().items():
        missing = sorted(r for r in reasons if f"error.{code}.reason.{r}" not in texts)
        assert missing == [], lang
        extra = {k.rsplit(".", 1)[1] for k in texts if k.startswith(f"error.{code}.reason.")}
        assert extra <= reasons, lang


CASES = [
    # code, fields, what a Vietnamese reader sees
    (
        "conflict",
        {"broadcast": "b", "holder": "em-1", "endpoint": "c0-e0"},
        "Không thể phát: loa c0-e0 đang phát em-1, chương trình có mức ưu tiên cao hơn.",
    ),
    ("not_found", {"zone": "xa-9"}, "Không tìm thấy khu vực xa-9."),
    (
        "forbidden",
        {"zones": ["c1", "p"], "endpoints": []},
        "Ngoài khu vực của bạn: c1, p",
    ),
    ("too_large", {}, "Tệp quá lớn."),
    (
        "bad_rrule",
        {"field": "rrule", "reason": "range", "part": "BYHOUR", "value": 25, "low": 0, "high": 23},
        "Giá trị 25 của BYHOUR phải nằm trong khoảng 0–23.",
    ),
    # a field named in the reader's words; a generic code without the server's English
    ("invalid_value", {"field": "variants[1].language"}, 'Giá trị của "ngôn ngữ" không hợp lệ.'),
    ("bad_request", {}, "Yêu cầu không hợp lệ."),
    (
        "bulletin_refused",
        {"bulletin": "b-1", "state": "done", "reason": "done"},
        "Bản tin đã phát xong.",
    ),
    (
        "in_past",
        {"field": "at"},
        "“thời điểm phát” đã qua; hãy chọn một thời điểm trong tương lai.",
    ),
    ("not_found", {"media": "m-1"}, "Không tìm thấy tệp âm thanh m-1 trong thư viện."),
]


@pytest.mark.e2e
async def test_the_pages_word_an_api_error_with_its_parameters(
    tmp_path: Path, browser: Any
) -> None:
    server = TestServer(create_app(tree_config(tmp_path)), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/login"))

        def word(code: str, fields: dict[str, Any]) -> str:
            return str(
                browser.execute_async_script(
                    """
                    const [code, fields, done] = arguments;
                    Promise.all([import("/static/js/i18n.js"), import("/static/js/api.js")])
                      .then(async ([i18n, api]) => {
                        await i18n.setLang("vi");
                        const body = { code, message: "english", ...fields };
                        done(api.errorText(new api.ApiError(400, code, "english", body)));
                      })
                      .catch((e) => done(`failed: ${e}`));
                    """,
                    code,
                    fields,
                )
            )

        await in_thread(browser.get, url)
        for code, fields, words in CASES:
            assert await in_thread(word, code, fields) == words
    finally:
        await server.close()
