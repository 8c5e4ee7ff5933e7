"""The speakers table's quality words (``static/js/quality.js``), run by node on the page's
own module and dictionaries: loss and jitter from the status or the RTCP receiver report,
the report's round trip, and a pole out of step (beyond ±10 ms) flagged."""

from __future__ import annotations

from typing import Any

from tests.support.node import run_script

SCRIPT = """
import { readFileSync } from "node:fs";
const [root, cases] = [process.argv[1], JSON.parse(readFileSync(0, "utf8"))];
const { qualityParts } = await import(`${root}/js/quality.js`);
const dicts = {};
const tr = (lang) => {
  dicts[lang] ??= JSON.parse(readFileSync(`${root}/i18n/${lang}.json`, "utf8"));
  return (key, p = {}) => {
    if (!(key in dicts[lang])) throw new Error(`no text for ${key}`);
    return dicts[lang][key].replace(/\\{(\\w+)\\}/g, (m, n) => (n in p ? String(p[n]) : m));
  };
};
process.stdout.write(JSON.stringify(cases.map(([ep, lang]) => qualityParts(ep, tr(lang)))));
"""

RECEPTION = {"fraction_lost": 0.0625, "jitter_ms": 3.2, "rtt_ms": 41.6, "cumulative_lost": 9}
IN_STEP = {"received": 990, "lost": 10, "jitter_ms": 4.4, "synced": True,
           "playout_error_ms": -0.42, "clock_offset_ms": 12.5}  # fmt: skip


def words(*cases: tuple[dict[str, Any], str]) -> list[list[tuple[str, bool]]]:
    return [[(p["text"], p["bad"]) for p in parts] for parts in run_script(SCRIPT, cases)]


def test_a_pole_in_step_and_one_out_of_step() -> None:
    late = {**IN_STEP, "playout_error_ms": 12.04}
    assert words(
        ({"status": IN_STEP}, "en"), ({"status": late}, "en"), ({"status": late}, "vi")
    ) == [
        [("loss 1.0%", False), ("jitter 4 ms", False), ("in step −0.4 ms", False)],
        [("loss 1.0%", False), ("jitter 4 ms", False), ("out of step +12.0 ms", True)],
        [("mất 1.0%", False), ("trễ dao động 4 ms", False), ("lệch nhịp +12.0 ms", True)],
    ]


def test_the_receiver_report_speaks_for_plain_rtp_receivers_and_adds_the_round_trip() -> None:
    speaker = {"status": IN_STEP, "reception": RECEPTION}
    assert words(({"reception": RECEPTION, "status": {}}, "en"), (speaker, "en")) == [
        [("loss 6.3%", True), ("jitter 3 ms", False), ("round trip 42 ms", False)],
        [("loss 1.0%", False), ("jitter 4 ms", False), ("round trip 42 ms", False),
         ("in step −0.4 ms", False)],
    ]  # fmt: skip


def test_a_playing_pole_that_cannot_keep_step_is_flagged_and_an_old_one_is_not() -> None:
    lost = {"received": 10, "lost": 0, "synced": False, "clock_offset_ms": None,
            "playout_error_ms": None}  # fmt: skip
    old = {"received": 10, "lost": 0}  # a speaker from before synchronised playout
    playing = {"online": True, "playing": "bc-1"}
    assert words(({**playing, "status": lost}, "en"), ({**playing, "status": old}, "en")) == [
        [("loss 0.0%", False), ("not in step", True)],
        [("loss 0.0%", False)],
    ]
    assert words(({"status": {}}, "en")) == [[]]
