"""CAP ingest: sample alerts parse and map to the right plan; hostile and broken documents are
refused with their exact error; the level table row by row; random bytes raise only CapError."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loa.bulletins.cap import (
    Alert,
    CapError,
    Category,
    Certainty,
    Geocode,
    MsgType,
    Reference,
    Scope,
    Severity,
    Status,
    Urgency,
    parse_alert,
    parse_time,
)
from loa.bulletins.mapping import (
    BulletinPlan,
    Cancel,
    Ignored,
    Level,
    Variant,
    language_rank,
    level_for,
    plan,
    spoken_text,
)
from loa.errors import LoaError
from loa.relay.core.priority import Priority
from loa.web.errors import http_status

DATA = Path(__file__).resolve().parent.parent / "data" / "cap"
ICT = timezone(timedelta(hours=7))
ZONES = {
    ("VN-DVHC", "19183"): "qt-gio-linh",
    ("VN-DVHC", "19186"): "qt-cua-tung",
    ("VN-DVHC", "02680"): "lc-ta-van",
    ("VN-DVHC", "02686"): "lc-ban-ho",
    ("VN-DVHC", "18505"): "ht-cam-xuyen",
}
TYPHOON_REF = Reference(
    "bchpctt@quangtri.gov.vn", "QT-PCTT-2025-0912-001", datetime(2025, 9, 12, 14, tzinfo=ICT)
)
UPDATE_REF = Reference(
    "bchpctt@quangtri.gov.vn", "QT-PCTT-2025-0913-002", datetime(2025, 9, 13, 6, tzinfo=ICT)
)
ALLOWED = {
    "status": "Actual, Exercise, System, Test, Draft",
    "msgType": "Alert, Update, Cancel, Ack, Error",
    "scope": "Public, Restricted, Private",
    "urgency": "Immediate, Expected, Future, Past, Unknown",
}
BAD_DOCTYPE = (
    "CAP document has a DOCTYPE 'alert'; DTDs and entities are forbidden "
    "(a CAP alert never needs them)"
)


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def typhoon_with(old: str, new: str) -> bytes:
    text = sample("typhoon.xml").decode()
    assert old in text
    return text.replace(old, new, 1).encode()


def rejected(data: bytes, **kw: int) -> str:
    with pytest.raises(CapError) as info:
        parse_alert(data, **kw)
    return str(info.value)


# --- parsing valid samples ---------------------------------------------------------------


def test_typhoon_warning_parses_every_field() -> None:
    alert = parse_alert(sample("typhoon.xml"))
    assert alert.reference == TYPHOON_REF
    assert (alert.status, alert.msg_type, alert.scope) == (
        Status.ACTUAL,
        MsgType.ALERT,
        Scope.PUBLIC,
    )
    assert alert.cap_version == "1.2"
    assert alert.references == ()
    [info] = alert.infos
    assert info.language == "vi-VN"
    assert info.categories == (Category.MET,)
    assert info.event == "Bão số 5"
    assert (info.urgency, info.severity, info.certainty) == (
        Urgency.IMMEDIATE,
        Severity.EXTREME,
        Certainty.OBSERVED,
    )
    assert info.effective == datetime(2025, 9, 12, 14, tzinfo=ICT)
    assert info.onset == datetime(2025, 9, 12, 20, tzinfo=ICT)
    assert info.expires == datetime(2025, 9, 13, 8, tzinfo=ICT)
    assert info.sender_name == (
        "Ban Chỉ huy Phòng chống thiên tai và Tìm kiếm cứu nạn tỉnh Quảng Trị"
    )
    assert info.headline == "Cảnh báo bão số 5 đổ bộ vào ven biển Quảng Trị"
    assert info.description is not None and info.description.startswith("Bão số 5 đang mạnh")
    [area] = info.areas
    assert area.area_desc == "Xã Gio Linh và xã Cửa Tùng, tỉnh Quảng Trị"
    assert area.geocodes == (Geocode("VN-DVHC", "19183"), Geocode("VN-DVHC", "19186"))
    assert area.polygons == ("17.05,107.05 17.05,107.12 16.98,107.12 16.98,107.05 17.05,107.05",)
    assert area.circles == ()


def test_parsed_alert_is_frozen() -> None:
    alert = parse_alert(sample("typhoon.xml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.identifier = "other"  # type: ignore[misc]


def test_cancel_carries_its_references_and_note() -> None:
    alert = parse_alert(sample("cancel.xml"))
    assert alert.msg_type is MsgType.CANCEL
    assert alert.references == (TYPHOON_REF, UPDATE_REF)
    assert alert.note == "Bão số 5 đã tan, kết thúc cảnh báo."
    assert alert.infos == ()


def test_resource_with_uri_and_size() -> None:
    hnj = parse_alert(sample("multilang.xml")).infos[1]
    assert hnj.language == "hnj"
    [res] = hnj.resources
    assert (res.resource_desc, res.mime_type, res.size) == (
        "Tshaj tawm lus Hmoob",
        "audio/ogg",
        48213,
    )
    assert res.uri == "http://pctt.laocai.gov.vn/amthanh/2025-0808-014-hnj.ogg"
    assert res.deref is None


def test_cap_1_1_is_accepted_with_its_optional_mime_type() -> None:
    alert = parse_alert(sample("cap11.xml"))
    assert alert.cap_version == "1.1"
    assert alert.sent == datetime(2024, 11, 2, 9, 15, tzinfo=UTC)  # "-00:00" is UTC
    [info] = alert.infos
    assert info.language == "en-US"  # CAP's default when <language> is absent
    [res] = info.resources
    assert res.mime_type is None
    assert res.deref == b"OggS\x00\x02" + bytes(8)  # derefUri is base64


def test_foreign_namespace_extensions_are_ignored() -> None:
    data = typhoon_with(
        "<scope>Public</scope>",
        '<scope>Public</scope><x:extra xmlns:x="urn:example:ext">1</x:extra>',
    )
    assert parse_alert(data) == parse_alert(sample("typhoon.xml"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-12T14:00:00+07:00", datetime(2025, 9, 12, 14, tzinfo=ICT)),
        ("2025-09-12T07:00:00-00:00", datetime(2025, 9, 12, 7, tzinfo=UTC)),
        ("2025-09-12T07:00:00Z", datetime(2025, 9, 12, 7, tzinfo=UTC)),
        ("2025-09-12T07:00:00.25+00:00", datetime(2025, 9, 12, 7, 0, 0, 250000, tzinfo=UTC)),
        ("2025-09-12T02:30:00-04:30", datetime(2025, 9, 12, 7, tzinfo=UTC)),
    ],
)
def test_cap_times(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "alert/sent")
    assert parsed == expected
    assert parsed.tzinfo is not None


# --- hostile and broken documents: each with its exact error ----------------------------


def test_malformed_xml_names_line_and_column() -> None:
    data = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">\n  <identifier>x</alert>'
    with pytest.raises(CapError) as info:
        parse_alert(data)
    assert str(info.value) == "malformed XML at line 2, column 18: mismatched tag"
    assert info.value.fields == {"line": 2, "column": 18}
    assert info.value.code == "bad_cap"
    assert http_status(info.value) == 422
    assert isinstance(info.value, LoaError) and isinstance(info.value, ValueError)


def test_empty_document() -> None:
    assert rejected(b"") == "malformed XML at line 1, column 1: no element found"


def test_unknown_encoding() -> None:
    data = b'<?xml version="1.0" encoding="x-klingon"?><alert/>'
    assert rejected(data) == "malformed XML: unknown encoding: x-klingon"


def test_external_entity_is_refused_before_anything_is_read() -> None:
    assert rejected(sample("xxe.xml")) == BAD_DOCTYPE


def test_billion_laughs_is_refused_before_expansion() -> None:
    assert rejected(sample("billion_laughs.xml")) == BAD_DOCTYPE


def test_external_dtd_is_refused() -> None:
    data = b'<!DOCTYPE alert SYSTEM "http://evil.example/cap.dtd"><alert/>'
    assert rejected(data) == (
        "CAP document has a DOCTYPE 'alert' (system id 'http://evil.example/cap.dtd'); "
        "DTDs and entities are forbidden (a CAP alert never needs them)"
    )


def test_oversize_document_is_refused_before_parsing() -> None:
    data = b"<" * (256 * 1024 + 1)  # not even XML: the size check comes first
    assert rejected(data) == "CAP document is 262145 bytes; the limit is 262144"
    assert rejected(sample("typhoon.xml"), max_bytes=100).endswith("bytes; the limit is 100")


def test_wrong_namespace() -> None:
    data = typhoon_with("cap:1.2", "cap:1.0")
    assert rejected(data) == (
        "root element is <alert> in namespace 'urn:oasis:names:tc:emergency:cap:1.0'; "
        "expected <alert> in namespace urn:oasis:names:tc:emergency:cap:1.2 "
        "or urn:oasis:names:tc:emergency:cap:1.1"
    )


def test_no_namespace() -> None:
    assert rejected(b"<alert/>") == (
        "root element is <alert> with no namespace; expected <alert> in namespace "
        "urn:oasis:names:tc:emergency:cap:1.2 or urn:oasis:names:tc:emergency:cap:1.1"
    )


def test_root_is_not_alert() -> None:
    data = b'<info xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>'
    assert rejected(data).startswith(
        "root element is <info> in namespace 'urn:oasis:names:tc:emergency:cap:1.2';"
    )


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        (
            "<identifier>QT-PCTT-2025-0912-001</identifier>",
            "",
            "missing required element alert/identifier",
        ),
        (
            "<identifier>QT-PCTT-2025-0912-001</identifier>",
            "<identifier>a</identifier><identifier>b</identifier>",
            "alert/identifier appears 2 times; CAP allows one",
        ),
        (
            "<identifier>QT-PCTT-2025-0912-001</identifier>",
            "<identifier>  </identifier>",
            "alert/identifier is empty",
        ),
        (
            "<identifier>QT-PCTT-2025-0912-001</identifier>",
            "<identifier><b>x</b></identifier>",
            "alert/identifier must hold text, not elements",
        ),
        (
            "<identifier>QT-PCTT-2025-0912-001</identifier>",
            "<identifier>QT,001</identifier>",
            "alert/identifier: 'QT,001' contains a space, comma, '<' or '&', which CAP forbids",
        ),
        (
            "<urgency>Immediate</urgency>",
            "<urgency>Soon</urgency>",
            f"alert/info[1]/urgency: 'Soon' is not one of {ALLOWED['urgency']}",
        ),
        (
            "<status>Actual</status>",
            "<status>actual</status>",
            f"alert/status: 'actual' is not one of {ALLOWED['status']}",
        ),
        (
            "<msgType>Alert</msgType>",
            "<msgType>Warning</msgType>",
            f"alert/msgType: 'Warning' is not one of {ALLOWED['msgType']}",
        ),
        (
            "<scope>Public</scope>",
            "<scope>Everyone</scope>",
            f"alert/scope: 'Everyone' is not one of {ALLOWED['scope']}",
        ),
        (
            "<category>Met</category>",
            "<category>Weather</category>",
            "alert/info[1]/category[1]: 'Weather' is not one of Geo, Met, Safety, Security, "
            "Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other",
        ),
        (
            "<category>Met</category>",
            "",
            "missing required element alert/info[1]/category",
        ),
        ("<event>Bão số 5</event>", "", "missing required element alert/info[1]/event"),
        (
            "<certainty>Observed</certainty>",
            "",
            "missing required element alert/info[1]/certainty",
        ),
        (
            "<sent>2025-09-12T14:00:00+07:00</sent>",
            "<sent>2025-09-12T14:00:00</sent>",
            "alert/sent: '2025-09-12T14:00:00' has no timezone; CAP times carry one, "
            "like 2025-09-12T14:00:00+07:00",
        ),
        (
            "<sent>2025-09-12T14:00:00+07:00</sent>",
            "<sent>12/09/2025 14:00</sent>",
            "alert/sent: '12/09/2025 14:00' is not a CAP date-time like 2025-09-12T14:00:00+07:00",
        ),
        (
            "<expires>2025-09-13T08:00:00+07:00</expires>",
            "<expires>2025-13-13T08:00:00+07:00</expires>",
            "alert/info[1]/expires: '2025-13-13T08:00:00+07:00' is not a valid date-time: "
            "month must be in 1..12",
        ),
        (
            "<expires>2025-09-13T08:00:00+07:00</expires>",
            "<expires>2025-09-13T08:00:00+24:00</expires>",
            "alert/info[1]/expires: '2025-09-13T08:00:00+24:00' has an impossible timezone +24:00",
        ),
        (
            "<areaDesc>Xã Gio Linh và xã Cửa Tùng, tỉnh Quảng Trị</areaDesc>",
            "",
            "missing required element alert/info[1]/area[1]/areaDesc",
        ),
        (
            "<value>19186</value>",
            "",
            "missing required element alert/info[1]/area[1]/geocode[2]/value",
        ),
        (
            "<scope>Public</scope>",
            "<scope>Public</scope><references>QT-PCTT-2025-0912-001</references>",
            "alert/references: 'QT-PCTT-2025-0912-001' is not sender,identifier,sent",
        ),
        (
            "<scope>Public</scope>",
            "<scope>Public</scope><references>a,b,2025-09-12</references>",
            "alert/references: '2025-09-12' is not a CAP date-time like 2025-09-12T14:00:00+07:00",
        ),
    ],
)
def test_bad_alert_is_rejected_with_its_path(old: str, new: str, error: str) -> None:
    assert rejected(typhoon_with(old, new)) == error


RESOURCE = (
    "<resource><resourceDesc>Bản tin</resourceDesc><mimeType>audio/ogg</mimeType>{}</resource>"
)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            "<size>12kB</size>",
            "alert/info[1]/resource[1]/size: '12kB' is not a whole number of bytes",
        ),
        ("<size>١٢</size>", "alert/info[1]/resource[1]/size: '١٢' is not a whole number of bytes"),
        ("<derefUri>T2dn!!</derefUri>", "alert/info[1]/resource[1]/derefUri is not valid base64"),
    ],
)
def test_bad_resource(extra: str, error: str) -> None:
    assert rejected(typhoon_with("<area>", RESOURCE.format(extra) + "<area>")) == error


def test_cap_1_2_resource_needs_a_mime_type() -> None:
    data = typhoon_with("<area>", "<resource><resourceDesc>x</resourceDesc></resource><area>")
    assert rejected(data) == "missing required element alert/info[1]/resource[1]/mimeType"


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_cap_error(data: bytes) -> None:
    """Any exception but CapError fails this; whatever parses must be a whole Alert."""
    try:
        alert: Alert | CapError = parse_alert(data)
    except CapError as exc:
        alert = exc
    if isinstance(alert, CapError):
        assert alert.code == "bad_cap"
    else:
        assert alert.identifier


@settings(max_examples=300)
@given(st.data())
def test_mangled_samples_raise_only_cap_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["typhoon.xml", "multilang.xml", "cancel.xml", "cap11.xml"]))
    doc = sample(name)
    start = data.draw(st.integers(0, len(doc)))
    end = data.draw(st.integers(start, min(len(doc), start + 40)))
    patch = data.draw(st.binary(max_size=20) | st.sampled_from([b"", b"<", b"&amp;", b"\xff"]))
    try:
        alert = parse_alert(doc[:start] + patch + doc[end:])
    except CapError:
        return
    assert alert.sent.tzinfo is not None
    assert isinstance(plan(alert, geocode_zones=ZONES), BulletinPlan | Cancel | Ignored)


# --- the level table ---------------------------------------------------------------------

E, P, N = Level.EMERGENCY, Level.PRIORITY, Level.NORMAL
TABLE = {  # urgency → levels for Extreme, Severe, Moderate, Minor, Unknown severity
    Urgency.IMMEDIATE: (E, E, P, N, N),
    Urgency.EXPECTED: (P, P, P, N, N),
    Urgency.FUTURE: (N, N, N, N, N),
    Urgency.PAST: (N, N, N, N, N),
    Urgency.UNKNOWN: (N, N, N, N, N),
}
ROWS = [
    (urgency, severity, level)
    for urgency, levels in TABLE.items()
    for severity, level in zip(Severity, levels, strict=True)
]


@pytest.mark.parametrize(("urgency", "severity", "level"), ROWS)
def test_level_table(urgency: Urgency, severity: Severity, level: Level) -> None:
    assert level_for(urgency, severity) is level


@pytest.mark.parametrize(("urgency", "severity", "level"), ROWS)
def test_level_table_through_plan(urgency: Urgency, severity: Severity, level: Level) -> None:
    alert = parse_alert(
        typhoon_with("<urgency>Immediate</urgency>", f"<urgency>{urgency}</urgency>").replace(
            b"<severity>Extreme</severity>", f"<severity>{severity}</severity>".encode()
        )
    )
    result = plan(alert, geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    assert result.level is level


def test_level_table_is_monotone() -> None:
    order = {N: 0, P: 1, E: 2}
    urgencies = [Urgency.IMMEDIATE, Urgency.EXPECTED, Urgency.FUTURE]  # most urgent first
    severities = [Severity.EXTREME, Severity.SEVERE, Severity.MODERATE, Severity.MINOR]
    for i, u in enumerate(urgencies):
        for j, s in enumerate(severities):
            here = order[level_for(u, s)]
            assert all(order[level_for(u2, s)] <= here for u2 in urgencies[i:])
            assert all(order[level_for(u, s2)] <= here for s2 in severities[j:])


def test_levels_play_at_their_broadcast_class() -> None:
    assert [lv.priority for lv in Level] == [
        Priority.SCHEDULED,
        Priority.PRIORITY,
        Priority.EMERGENCY,
    ]


# --- mapping the samples -----------------------------------------------------------------


def test_typhoon_warning_is_an_emergency_on_both_communes() -> None:
    result = plan(parse_alert(sample("typhoon.xml")), geocode_zones=ZONES)
    assert result == BulletinPlan(
        alert=TYPHOON_REF,
        level=Level.EMERGENCY,
        zones=frozenset({"qt-gio-linh", "qt-cua-tung"}),
        variants=(
            Variant(
                "vi-VN",
                "Cảnh báo bão số 5 đổ bộ vào ven biển Quảng Trị.\n"
                "Bão số 5 đang mạnh cấp 12, giật cấp 15, dự kiến đổ bộ vào ven biển tỉnh "
                "Quảng Trị từ 20 giờ tối nay. Mưa rất to, nguy cơ lũ quét và sạt lở đất.\n"
                "Người dân vùng trũng thấp di chuyển ngay đến nơi tránh trú an toàn theo "
                "hướng dẫn của chính quyền xã.",
            ),
        ),
        event="Bão số 5",
        expires_at=datetime(2025, 9, 13, 1, tzinfo=UTC).timestamp(),
        effective_at=datetime(2025, 9, 12, 7, tzinfo=UTC).timestamp(),
        repeat_every_s=600.0,  # the default: an emergency repeats every 10 minutes
    )
    assert result.level.priority is Priority.EMERGENCY


def test_update_replaces_the_typhoon_bulletin() -> None:
    result = plan(parse_alert(sample("update.xml")), geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    assert result.replaces == (TYPHOON_REF,)
    assert result.alert == UPDATE_REF
    assert result.level is Level.PRIORITY  # Expected + Severe
    assert result.zones == {"qt-gio-linh"}
    assert result.effective_at == UPDATE_REF.sent.timestamp()  # no <effective>: sent
    assert result.warnings == ()


def test_cancel_names_both_earlier_alerts() -> None:
    cancel = parse_alert(sample("cancel.xml"))
    assert plan(cancel, geocode_zones=ZONES) == Cancel(
        alert=cancel.reference,
        references=(TYPHOON_REF, UPDATE_REF),
        note="Bão số 5 đã tan, kết thúc cảnh báo.",
    )


def test_cancel_references_match_the_alerts_they_cancel() -> None:
    result = plan(parse_alert(sample("cancel.xml")), geocode_zones=ZONES)
    assert isinstance(result, Cancel)
    for name in ("typhoon.xml", "update.xml"):
        assert parse_alert(sample(name)).reference in result.references


def test_exercise_stays_off_air_unless_allowed() -> None:
    exercise = parse_alert(sample("exercise.xml"))
    assert plan(exercise, geocode_zones=ZONES) == Ignored(
        "status Exercise is not allowed on air (allowed: Actual)"
    )
    allowed = plan(exercise, geocode_zones=ZONES, allow_status=("Actual", "Exercise"))
    assert isinstance(allowed, BulletinPlan)
    assert allowed.level is Level.EMERGENCY
    assert allowed.zones == {"qt-cua-tung"}
    assert allowed.variants == (Variant("vi-VN", "Diễn tập: sơ tán dân vùng ven biển."),)


def test_multilanguage_alert_orders_variants_by_zone_languages() -> None:
    alert = parse_alert(sample("multilang.xml"))
    vi_first = plan(alert, geocode_zones=ZONES, languages=("vi",))
    assert isinstance(vi_first, BulletinPlan)
    assert [v.language for v in vi_first.variants] == ["vi", "hnj"]
    vi, hnj = vi_first.variants
    assert vi.audio is None
    assert vi.text == (
        "Cảnh báo lũ quét và sạt lở đất.\n"
        "Mưa lớn kéo dài, nguy cơ lũ quét tại các suối và sạt lở đất trên sườn dốc!\n"
        "Không qua suối, không ở gần sườn đồi dốc."
    )
    assert hnj.audio is not None
    assert hnj.audio.uri == "http://pctt.laocai.gov.vn/amthanh/2025-0808-014-hnj.ogg"
    assert hnj.text == "Ceeb toom dej nyab thiab av pob."
    assert vi_first.level is Level.PRIORITY
    assert vi_first.zones == {"lc-ta-van", "lc-ban-ho"}
    assert vi_first.expires_at == datetime(2025, 8, 8, 10, 30, tzinfo=UTC).timestamp()
    assert vi_first.warnings == (
        "unknown geocode VN-DVHC=99999 in area 'Xã Tả Van và xã Bản Hồ'",
        "unknown geocode VN-DVHC=99999 in area 'Tả Van, Bản Hồ'",
        "info[2] language hnj is not among the zone languages (vi); it plays last",
    )
    hmong_first = plan(alert, geocode_zones=ZONES, languages=("hnj", "vi-VN"))
    assert isinstance(hmong_first, BulletinPlan)
    assert hmong_first.variants == (hnj, vi)
    assert not any("language" in w for w in hmong_first.warnings)


def test_cap_1_1_alert_maps_to_a_normal_spoken_bulletin() -> None:
    result = plan(parse_alert(sample("cap11.xml")), geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    assert result.level is Level.NORMAL  # Future + Minor
    assert result.zones == {"ht-cam-xuyen"}
    assert result.expires_at is None
    # Its resource has no mimeType, so it is not known to be audio: the text is spoken.
    assert result.variants == (Variant("en-US", "Không khí lạnh tăng cường, rét đậm từ đêm mai."),)
    assert result.warnings == (
        "info[1] language en-US is not among the zone languages (vi); it plays last",
    )


# --- mapping rules -----------------------------------------------------------------------


def test_no_known_zone_is_ignored_listing_the_geocodes() -> None:
    result = plan(parse_alert(sample("typhoon.xml")), geocode_zones={})
    assert result == Ignored(
        "no area maps to a zone",
        (
            "unknown geocode VN-DVHC=19183 in area 'Xã Gio Linh và xã Cửa Tùng, tỉnh Quảng Trị'",
            "unknown geocode VN-DVHC=19186 in area 'Xã Gio Linh và xã Cửa Tùng, tỉnh Quảng Trị'",
        ),
    )


def test_area_without_geocode_is_a_warning() -> None:
    alert = parse_alert(sample("typhoon.xml"))
    info = alert.infos[0]
    polygon_only = dataclasses.replace(info.areas[0], area_desc="Vùng biển", geocodes=())
    info = dataclasses.replace(info, areas=(*info.areas, polygon_only))
    result = plan(dataclasses.replace(alert, infos=(info,)), geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    assert result.warnings == (
        "area 'Vùng biển' has no geocode (polygons and circles are not mapped to zones)",
    )


def test_expired_alert_is_ignored_when_now_is_given() -> None:
    alert = parse_alert(sample("typhoon.xml"))
    expires = datetime(2025, 9, 13, 8, tzinfo=ICT).timestamp()
    assert isinstance(plan(alert, geocode_zones=ZONES, now=expires - 1), BulletinPlan)
    assert plan(alert, geocode_zones=ZONES, now=expires) == Ignored(
        "every info block has expired",
        ("info[1] (vi-VN) expired at 2025-09-13T08:00:00+07:00",),
    )


def test_expires_at_is_none_when_an_info_has_no_expiry() -> None:
    alert = parse_alert(sample("typhoon.xml"))
    endless = dataclasses.replace(alert.infos[0], language="en", expires=None)
    result = plan(dataclasses.replace(alert, infos=(alert.infos[0], endless)), geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    assert result.expires_at is None


def test_restricted_scope_stays_off_air_unless_allowed() -> None:
    alert = dataclasses.replace(parse_alert(sample("typhoon.xml")), scope=Scope.RESTRICTED)
    assert plan(alert, geocode_zones=ZONES) == Ignored(
        "scope Restricted is not allowed on air (allowed: Public)"
    )
    assert isinstance(
        plan(alert, geocode_zones=ZONES, allow_scope=("Public", "Restricted")), BulletinPlan
    )


@pytest.mark.parametrize("msg_type", [MsgType.ACK, MsgType.ERROR])
def test_ack_and_error_carry_no_bulletin(msg_type: MsgType) -> None:
    alert = dataclasses.replace(parse_alert(sample("typhoon.xml")), msg_type=msg_type)
    assert plan(alert, geocode_zones=ZONES) == Ignored(f"msgType {msg_type} carries no bulletin")


def test_cancel_without_references_is_ignored() -> None:
    alert = dataclasses.replace(parse_alert(sample("cancel.xml")), references=())
    assert plan(alert, geocode_zones=ZONES) == Ignored(
        "Cancel names no earlier alert in references"
    )


def test_update_without_references_plays_with_a_warning() -> None:
    alert = dataclasses.replace(parse_alert(sample("update.xml")), references=())
    result = plan(alert, geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    assert result.replaces == ()
    assert result.warnings == ("Update names no earlier alert in references: nothing to replace",)


def test_alert_without_info_is_ignored() -> None:
    alert = dataclasses.replace(parse_alert(sample("typhoon.xml")), infos=())
    assert plan(alert, geocode_zones=ZONES) == Ignored("Alert has no info block")


def test_info_with_nothing_to_play_is_skipped() -> None:
    alert = parse_alert(sample("typhoon.xml"))
    silent = dataclasses.replace(
        alert.infos[0], language="en", headline=None, description=None, instruction=None
    )
    only_silent = plan(dataclasses.replace(alert, infos=(silent,)), geocode_zones=ZONES)
    assert only_silent == Ignored(
        "no info block has audio or text to play",
        ("info[1] (en) has neither audio nor text; skipped",),
    )
    both = plan(dataclasses.replace(alert, infos=(alert.infos[0], silent)), geocode_zones=ZONES)
    assert isinstance(both, BulletinPlan)
    assert [v.language for v in both.variants] == ["vi-VN"]
    assert both.warnings == ("info[2] (en) has neither audio nor text; skipped",)


def test_inline_audio_counts_and_non_audio_does_not() -> None:
    alert = parse_alert(sample("cap11.xml"))
    [res] = alert.infos[0].resources
    image = dataclasses.replace(res, mime_type="image/png")
    audio = dataclasses.replace(res, mime_type="audio/ogg")
    info = dataclasses.replace(alert.infos[0], language="vi", resources=(image, audio))
    result = plan(dataclasses.replace(alert, infos=(info,)), geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan)
    [variant] = result.variants
    assert variant.audio == audio
    assert variant.audio.deref == b"OggS\x00\x02" + bytes(8)


@pytest.mark.parametrize(
    ("tag", "languages", "rank"),
    [
        ("vi", ("vi", "hnj"), 0),
        ("VI-vn", ("hnj", "vi-VN"), 1),  # exact, any case
        ("vi-VN", ("hnj", "vi"), 1),  # primary subtag
        ("vi", ("hnj", "vi-VN"), 1),
        ("en-US", ("vi", "hnj"), 2),  # unlisted: after every listed one
        ("hnj", (), 0),
    ],
)
def test_language_rank(tag: str, languages: tuple[str, ...], rank: int) -> None:
    assert language_rank(tag, languages) == rank


def test_spoken_text_ends_each_part_as_a_sentence() -> None:
    info = dataclasses.replace(
        parse_alert(sample("typhoon.xml")).infos[0],
        headline="Khẩn cấp!",
        description="Nước lên\n   rất nhanh",
        instruction=None,
    )
    assert spoken_text(info) == "Khẩn cấp!\nNước lên rất nhanh."


# --- repeats -----------------------------------------------------------------------------


def with_parameters(*pairs: tuple[str, str]) -> bytes:
    xml = "".join(
        f"<parameter><valueName>{n}</valueName><value>{v}</value></parameter>" for n, v in pairs
    )
    return typhoon_with("    <area>", xml + "\n    <area>")


def test_parameters_are_parsed_in_document_order() -> None:
    alert = parse_alert(with_parameters(("repeatIntervalMinutes", "5"), ("other", "x y")))
    assert alert.infos[0].parameters == (("repeatIntervalMinutes", "5"), ("other", "x y"))
    assert parse_alert(sample("typhoon.xml")).infos[0].parameters == ()


def test_parameter_without_value_names_its_path() -> None:
    bad = typhoon_with("    <area>", "<parameter><valueName>x</valueName></parameter><area>")
    assert rejected(bad) == "missing required element alert/info[1]/parameter[1]/value"


@pytest.mark.parametrize(
    ("pairs", "default", "every"),
    [
        ((), 600.0, 600.0),
        ((), 90.0, 90.0),
        ((), 0.0, None),  # configured to play once
        ((("repeatIntervalMinutes", "5"),), 600.0, 300.0),
        ((("repeatIntervalMinutes", "0"),), 600.0, None),  # the alert asks to play once
        ((("repeatIntervalMinutes", "15"), ("repeatIntervalMinutes", "3")), 600.0, 180.0),
        ((("somethingElse", "1"),), 600.0, 600.0),
    ],
)
def test_emergency_repeat_interval(
    pairs: tuple[tuple[str, str], ...], default: float, every: float | None
) -> None:
    result = plan(parse_alert(with_parameters(*pairs)), geocode_zones=ZONES, repeat_every_s=default)
    assert isinstance(result, BulletinPlan)
    assert result.repeat_every_s == every


@pytest.mark.parametrize("value", ["-1", "1.5", "five", "1441", "١"])
def test_malformed_repeat_interval_is_refused_with_its_path(value: str) -> None:
    alert = parse_alert(with_parameters(("other", "x"), ("repeatIntervalMinutes", value)))
    with pytest.raises(CapError) as info:
        plan(alert, geocode_zones=ZONES)
    assert str(info.value) == (
        "alert/info[1]/parameter[2]/value: repeatIntervalMinutes must be a whole number of "
        f"minutes from 0 to 1440, got {value!r}"
    )


def test_only_emergencies_repeat() -> None:
    priority = with_parameters(("repeatIntervalMinutes", "5")).replace(
        b"<urgency>Immediate<", b"<urgency>Expected<"
    )
    result = plan(parse_alert(priority), geocode_zones=ZONES)
    assert isinstance(result, BulletinPlan) and result.level is Level.PRIORITY
    assert result.repeat_every_s is None
