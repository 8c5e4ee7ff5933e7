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
        ("[web]\nport = 70000\n", "web.port must be 0..65535, got 70000"),
        (
            "[opus]\nsignal = 'speech'\n",
            "opus.signal must be one of ('voice', 'music', 'auto'), got 'speech'",
        ),
        ("[opus]\nbitrate = 1\n", "[opus]: unknown setting(s) ['bitrate']"),
        ("colour = 1\n", "unknown top-level setting(s) ['colour']"),
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
