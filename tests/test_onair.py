"""The restore decisions of loa.onair (what a restarted server does with what was on air)."""

from __future__ import annotations

from typing import Any

import pytest

from loa.onair import Action, decide, issued_text


def record(klass: str = "emergency", **spec: Any) -> dict[str, Any]:
    return {
        "spec": {"class": klass, "expires_at": None, "live": False, **spec},
        "source": {"type": "tts", "text": "Bão số 9"},
    }


@pytest.mark.parametrize(
    ("rec", "action"),
    [
        (record("emergency"), Action.REPLAY),
        (record("emergency", expires_at=2000.0), Action.REPLAY),
        (record("emergency", expires_at=1000.0), Action.EXPIRED),  # expired while down
        (record("emergency", expires_at=999.0), Action.EXPIRED),
        (record("live"), Action.RESUME),
        (record("scheduled"), Action.RESUME),
        (record("priority", expires_at=1500.0), Action.RESUME),
        (record("live", live=True), Action.INTERRUPTED),  # WHIP / Icecast: publisher returns
        (record("emergency", live=True), Action.INTERRUPTED),
        ({**record("scheduled"), "source": None}, Action.INTERRUPTED),  # nothing to rebuild
        (record("live", live=True, expires_at=10.0), Action.EXPIRED),
    ],
)
def test_decide(rec: dict[str, Any], action: Action) -> None:
    assert decide(rec, now=1000.0) is action


def test_issued_text_speaks_the_zone_local_time() -> None:
    # 2026-12-03 03:05 UTC is 10:05 in Hà Nội (UTC+7)
    issued = 1_796_267_100.0
    assert issued_text(issued, "Asia/Ho_Chi_Minh") == (
        "Thông báo khẩn cấp phát lúc 10 giờ 05, ngày 3 tháng 12."
    )
    assert "lúc 3 giờ 05, ngày 3 tháng 12" in issued_text(issued, "UTC")
