"""The link bench (bench/links.py): its slot classification, and one bounded scenario run
end to end (a real relay, a real speaker, 5 % loss both ways on the impairing link)."""

from __future__ import annotations

import pytest

from bench.links import SCENARIOS, classify, dropouts, recovery_s, run, run_scenario, table
from bench.netns import ip, skip_reason


def test_slots_are_classified_and_dropouts_are_runs_of_what_was_not_heard() -> None:
    kinds = ["sent", "retx", "concealed", "silent", "silent", "fec", "sent"] + ["silent"] * 3
    frames = [(1.0 + 0.02 * i, kind) for i, kind in enumerate(kinds)]
    assert classify(frames, 1.01, 1.13) == kinds[1:7]
    assert dropouts(kinds) == [3, 3]
    assert recovery_s(frames, 1.01) == 0.09  # buffered audio, the gap, back with fec at 1.10
    assert recovery_s(frames, 1.13) is None  # never back
    assert recovery_s(frames[:2], 1.0) == 0.0  # no gap at all


@pytest.mark.e2e
async def test_five_percent_loss_is_heard_whole() -> None:
    (five,) = [s for s in SCENARIOS if s.name == "5 % loss"]
    row = await run_scenario(five, 4.0)
    # 4 s is 200 slots; a pole in step pops its first frame, then waits to play it at
    # capture + D (slot times are pop times), so the window holds up to D/20 ms fewer.
    assert row["slots"] >= 180, row
    assert row["retx"] >= 3  # the seeded link lost packets, and they came back
    assert row["heard_pct"] >= 98.0, row
    assert row["longest_ms"] <= 40
    assert "| 5 % loss | nack |" in table([row])


@pytest.mark.e2e
async def test_a_pole_in_its_own_network_namespace() -> None:
    """--netns: the pole is its own process in a namespace behind a veth pair and a bridge;
    it hears what the RED zone sends it, and the namespace and bridge are gone afterwards."""
    if (why := skip_reason()) is not None:
        pytest.skip(why)
    before = ip("netns", "list")
    (row,) = await run(["5 %"], 4.0, ["nack+red"], netns=True)
    assert row["netns"] and row["slots"] >= 180, row
    assert row["red"] >= 3 and row["heard_pct"] >= 98.0, row
    assert ip("netns", "list") == before  # removed, whatever the run did
    assert "lbr" not in ip("-o", "link", "show", "type", "bridge")


@pytest.mark.e2e
async def test_red_on_against_off_at_ten_percent_loss() -> None:
    """The same seeded 10 % loss both ways, the pole's zone without then with redundancy
    (no NACK either time): RED plays what was lost from the next packet's copy."""
    (ten,) = [s for s in SCENARIOS if s.name == "10 % loss"]
    off = await run_scenario(ten, 4.0, mode="none")
    on = await run_scenario(ten, 4.0, mode="red")
    # The seeded link loses ~14 of the ~188 frames in the window: without RED, Opus in-band
    # FEC (in the next packet, at a lower rate) covers some and the rest is concealed.
    assert off["red"] == 0 and off["fec"] + off["concealed"] >= 10, off
    assert off["concealed"] >= 5, off
    assert on["red"] >= 10 and on["concealed"] <= 4, on  # two in a row (1 %) left to PLC
    assert on["heard_pct"] >= 98.0 > off["heard_pct"], (off, on)
    assert on["mb_month"] > 1.5 * off["mb_month"]  # what it costs: the audio twice
