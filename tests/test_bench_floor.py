"""bench.floor's modes over loopback: each sends every frame to every receiver, the batched
ones (``sendmmsg``, the relay's fan-out with steady groups or without) in one system call a
frame."""

from __future__ import annotations

import pytest

from bench.floor import MODES, measure
from loa.relay import sendmmsg


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_sends_every_frame_to_every_receiver(mode: str) -> None:
    if mode in ("sendmmsg", "group", "loop") and not sendmmsg.available():
        pytest.skip("no sendmmsg in libc")
    result = measure(20, duration_s=0.2, mode=mode)  # 10 frames
    assert (result["packets"], result["dropped"]) == (200, 0)
    batched = mode in ("sendmmsg", "group", "loop")
    assert result["syscalls"] == (10 if batched else 200)


@pytest.mark.parametrize("mode", ["group", "loop"])
def test_no_send_counts_every_message_and_sends_none(mode: str) -> None:
    result = measure(20, duration_s=0.2, mode=mode, no_send=True)
    assert (result["packets"], result["dropped"], result["syscalls"]) == (200, 0, 10)


def test_no_send_is_only_for_the_fan_out() -> None:
    with pytest.raises(ValueError, match="--no-send is for --mode group or loop"):
        measure(2, duration_s=0.02, mode="sendto", no_send=True)


@pytest.mark.parametrize("mode", ["sendto", "group"])
def test_read_receivers_get_every_packet_from_another_process(mode: str) -> None:
    """``--receivers read``: the sockets belong to a process that reads them all; every
    datagram sent is read there (none dropped at a full receiver)."""
    if mode == "group" and not sendmmsg.available():
        pytest.skip("no sendmmsg in libc")
    result = measure(20, duration_s=0.2, mode=mode, receivers="read")
    assert (result["packets"], result["dropped"], result["read"]) == (200, 0, 200)
    assert result["receivers"] == "read"


def test_an_unknown_receivers_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="receivers must be one of"):
        measure(2, duration_s=0.02, receivers="sometimes")
