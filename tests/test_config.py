"""The config tree: file < environment < flags, and precise validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from loa import config as cfg
from loa.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "loa.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads() -> None:
    config = cfg.load(ROOT / "examples" / "loa.toml", env={})
    assert [z.id for z in config.zones] == ["tn", "tn-phu-luong", "tn-dai-tu"]
    assert config.endpoints[3].kind == "rtp"
    assert config.opus.bitrate_bps == 32000


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, 'admin_token = "from-file"\n[web]\nport = 9000\n')
    assert cfg.load(path, env={}).admin_token == "from-file"
    assert cfg.load(path, env={"LOA_ADMIN_TOKEN": "from-env"}).admin_token == "from-env"
    flagged = cfg.load(
        path, env={"LOA_ADMIN_TOKEN": "from-env"}, overrides={"admin_token": "flag", "web.port": 1}
    )
    assert (flagged.admin_token, flagged.web.port) == ("flag", 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web]\nport = 70000\n", "[web]: web.port must be 0..65535, got 70000"),
        (
            "[opus]\nsignal = 'speech'\n",
            "opus.signal must be one of ('voice', 'music', 'auto'), got 'speech'",
        ),
        ("[opus]\nbitrate = 1\n", "[opus].bitrate: unknown key"),
        ("[relay]\nudp_prot = 5004\n", "[relay].udp_prot: unknown key"),
        ("[relay]\nudp_port = '5004'\n", "[relay].udp_port: expected int, got str"),
        ("[relay]\nqueue_frames = 8\n", "[relay].queue_frames: unknown key"),
        (
            "[relay]\ncap_repeat_every_s = -1\n",
            "[relay]: relay.cap_repeat_every_s must be 0..86400, got -1.0",
        ),
        ("[relay]\nws_fallback_after_s = 3\n", "[relay].ws_fallback_after_s: unknown key"),
        ("[web]\nport = true\n", "[web].port: expected int, got bool"),
        ("web = 1\n", "[web]: expected object, got int"),
        ("data_dir = 3\n", "data_dir: expected a path (string), got int"),
        ("admin_token = 3\n", "admin_token: expected str | null, got int"),
        (
            "[[zones]]\nid='a'\nname='A'\ntimezone='Asia/Hanoii'\n",
            "[[zones]] #1: zone a: unknown time zone 'Asia/Hanoii'",
        ),
        ("[[zones]]\nid='a'\nname='A'\ntimezone=''\n", "zone a: unknown time zone ''"),
        ("[[zones]]\nname='A'\n", "[[zones]] #1.id: missing (required)"),
        (
            "[[zones]]\nid='a'\nname='A'\n[[endpoints]]\nid='e'\nname='E'\nzone='a'\n"
            "token='t'\nvolum=3\n",
            "[[endpoints]] #1.volum: unknown key",
        ),
        (
            "[[zones]]\nid='a'\nname='A'\n[[endpoints]]\nid='e'\nname='E'\nzone='a'\n"
            "token='t'\nlat='north'\n",
            "[[endpoints]] #1.lat: expected float | null, got str",
        ),
        ("colour = 1\n", "colour: unknown key"),
        ("[[zones]]\nid='a'\nname='A'\nparent='b'\n", "zone a: parent 'b' is not a declared zone"),
        (
            "[[zones]]\nid='a'\nname='A'\n[[endpoints]]\nid='e'\nname='E'\nzone='a'\n",
            "endpoint e: a managed endpoint needs a token",
        ),
        (
            "[[zones]]\nid='a'\nname='A'\n[[endpoints]]\nid='e'\nname='E'\nzone='a'\nkind='rtp'\n",
            "endpoint e: an rtp endpoint needs address = 'host:port'",
        ),
        ("admin_token = \n", "is not valid TOML"),
    ],
)
def test_bad_config_is_refused_precisely(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg.load(write(tmp_path, text), env={})
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        cfg.load(tmp_path / "nope.toml", env={})


MOUNT_ZONES = "[[zones]]\nid='p'\nname='P'\n[[zones]]\nid='c'\nname='C'\nparent='p'\n"


def test_mounts_load_from_toml(tmp_path: Path) -> None:
    text = MOUNT_ZONES + (
        "[[mounts]]\nname='studio.ogg'\npassword='hunter2'\nzones=['c']\n"
        "[[mounts]]\nname='alarm'\npassword='x'\nzones=['p']\nclass='emergency'\n"
        "origin_zone='p'\nuser='province'\n"
    )
    config = cfg.load(write(tmp_path, text), env={})
    studio, alarm = config.mounts
    assert studio == cfg.MountSpec("studio.ogg", "hunter2", ("c",))
    assert (studio.priority, studio.user, studio.origin_zone) == ("live", "source", None)
    assert (alarm.priority, alarm.origin_zone, alarm.user, alarm.zones) == (
        "emergency",
        "p",
        "province",
        ("p",),
    )
    assert "hunter2" not in repr(studio)  # passwords stay out of logs


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        (
            "name='a'\npassword='x'\nzones=['nowhere']\n",
            "mount a: zone 'nowhere' is not a declared",
        ),
        ("name='a'\npassword='x'\nzones=['c']\nclass='loud'\n", "mount a: class must be one of"),
        ("name='a'\npassword=''\nzones=['c']\n", "mount a: password must be a non-empty string"),
        ("name='a/b'\npassword='x'\nzones=['c']\n", "mount 'a/b': name must be 1-64 letters"),
        ("name='a'\npassword='x'\nzones=[]\n", "mount a: zones must name at least one zone"),
        ("name='a'\npassword='x'\nzones='c'\n", "[[mounts]] #1.zones: expected array, got str"),
        ("name='a'\npassword='x'\nzones=['c']\norigin_zone='q'\n", "origin_zone 'q' is not a"),
        ("name='a'\npassword='x'\nzones=['c']\nuser='a:b'\n", "user must be a non-empty string"),
        ("name='a'\npassword='x'\nzones=['c']\npriority='live'\n", "#1.priority: unknown key"),
        ("name='a'\npassword='x'\nzones=['c']\nport=8000\n", "[[mounts]] #1.port: unknown key"),
        ("name='a'\nzones=['c']\n", "[[mounts]] #1.password: missing (required)"),
    ],
)
def test_bad_mounts_are_refused_precisely(tmp_path: Path, mounts: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg.load(write(tmp_path, MOUNT_ZONES + "[[mounts]]\n" + mounts), env={})
    assert message in str(err.value)


def test_mount_names_are_unique(tmp_path: Path) -> None:
    one = "[[mounts]]\nname='a'\npassword='x'\nzones=['c']\n"
    with pytest.raises(ConfigError, match="mount names must be unique"):
        cfg.load(write(tmp_path, MOUNT_ZONES + one + one), env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[relay]\nudp_prot = 5004\n", "loa: [relay].udp_prot: unknown key"),
        ("[web]\nport = 'http'\n", "loa: [web].port: expected int, got str"),
        (
            "[[zones]]\nid = 'p'\nname = 'P'\ntimezone = 'Asia/Hanoi-ish'\n",
            "loa: [[zones]] #1: zone p: unknown time zone 'Asia/Hanoi-ish'",
        ),
    ],
)
def test_loa_serve_refuses_a_bad_config_at_start(tmp_path: Path, text: str, message: str) -> None:
    """The real command, before it listens: exit status 2 and the key's path on stderr."""
    import subprocess
    import sys

    path = write(tmp_path, text)
    run = subprocess.run(
        [sys.executable, "-m", "loa", "serve", "--config", str(path), "--host", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert "serving on" not in run.stdout


def test_the_speaker_does_not_need_msgspec() -> None:
    """Pole boards install little: the receiver's modules do not import the config's library."""
    import subprocess
    import sys

    code = "import sys, loa.speaker.client; assert 'msgspec' not in sys.modules, 'msgspec'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
