"""The dashboard's link counters per pole (``static/js/linkcounters.js``), run by node with
the pages' own dictionaries: what a speaker's status says, in words, in both languages."""

from __future__ import annotations

from tests.support.node import run_script

# scripts/test installs Debian's nodejs: a missing node is a set-up error, not a skip.

SCRIPT = """
import { readFileSync } from "node:fs";
const [root, cases] = [process.argv[1], JSON.parse(readFileSync(0, "utf8"))];
const { linkText } = await import(`${root}/js/linkcounters.js`);
const tr = (lang) => {
  const dict = JSON.parse(readFileSync(`${root}/i18n/${lang}.json`, "utf8"));
  return (key, p = {}) => {
    if (!(key in dict)) throw new Error(`no text for ${key}`);
    return dict[key].replace(/\\{(\\w+)\\}/g, (m, n) => (n in p ? String(p[n]) : m));
  };
};
process.stdout.write(JSON.stringify(cases.map(([status, lang]) => linkText(status, tr(lang)))));
"""

STATUS = {
    "received": 990,
    "played": 1000,
    "retransmitted": 40,
    "redundant": 12,
    "recovered": 3,
    "concealed": 2,
    "path_failures": 1,
}


def run_node(cases: list[tuple[object, str]]) -> list[str | None]:
    result: list[str | None] = run_script(SCRIPT, cases)
    return result


def test_a_poles_link_counters_in_words() -> None:
    older = {"received": 10, "lost": 1}  # a speaker from before the counters
    got = run_node([(STATUS, "en"), (STATUS, "vi"), (older, "en"), ({}, "vi"), (None, "en")])
    assert got == [
        "as sent 948 · resent 40 · RED 12 · FEC 3 · concealed 2 · path failures 1",
        "nguyên vẹn 948 · gửi lại 40 · dự phòng 12 · FEC 3 · che lỗi 2 · mất đường UDP 1",
        None,
        None,
        None,
    ]


def test_the_speaker_reports_what_the_counters_need() -> None:
    """Every field the dashboard reads is one a speaker's status may carry."""
    from loa.relay.core.control import STATUS_FIELDS

    assert set(STATUS) <= STATUS_FIELDS
