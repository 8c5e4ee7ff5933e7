"""The hardened-edges settings (issue 10 item 5): defaults, TOML, precise refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from loa import config as cfg
from loa.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str) -> cfg.Config:
    path = tmp_path / "loa.toml"
    path.write_text(text, encoding="utf-8")
    return cfg.load(path, env={})


def test_defaults() -> None:
    config = cfg.Config()
    assert config.web.header_timeout_s == 10.0
    assert config.web.trusted_proxies == ()
    assert config.web.metrics_token is None  # /metrics open, as before
    assert config.web.max_media_duration_s == 7200.0  # 2 h
    assert config.relay.url_allow_networks == ()  # loopback, link-local … refused


def test_from_toml(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[web]\nheader_timeout_s = 5\ntrusted_proxies = ['10.0.0.1', '2001:db8::/32']\n"
        "metrics_token = 'a-long-metrics-token'\nmax_media_duration_s = 600\n"
        "[relay]\nurl_allow_networks = ['127.0.0.1/32', '::1']\n",
    )
    assert config.web.header_timeout_s == 5
    assert config.web.trusted_proxies == ("10.0.0.1", "2001:db8::/32")
    assert config.web.metrics_token == "a-long-metrics-token"
    assert "a-long-metrics-token" not in repr(config)
    assert config.web.max_media_duration_s == 600
    assert config.relay.url_allow_networks == ("127.0.0.1/32", "::1")


def test_the_example_documents_every_edge_key() -> None:
    text = (ROOT / "examples" / "loa.toml").read_text(encoding="utf-8")
    for key in (
        "header_timeout_s",
        "trusted_proxies",
        "metrics_token",
        "max_media_duration_s",
        "url_allow_networks",
    ):
        assert f"# {key} = " in text or f"\n{key} = " in text, key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web]\nheader_timeout_s = 0\n", "web.header_timeout_s must be 0.1..3600, got 0"),
        ("[web]\nheader_timeout_s = 'x'\n", "[web].header_timeout_s: expected float, got str"),
        (
            "[web]\nmax_media_duration_s = true\n",
            "[web].max_media_duration_s: expected float, got bool",
        ),
        ("[web]\nmax_media_duration_s = 0.5\n", "web.max_media_duration_s must be 1..604800"),
        ("[web]\ntrusted_proxies = '10.0.0.1'\n", "[web].trusted_proxies: expected array, got str"),
        ("[web]\ntrusted_proxies = ['proxy']\n", "web.trusted_proxies: 'proxy' is not an IP"),
        ("[web]\ntrusted_proxies = [1]\n", "[web].trusted_proxies[0]: expected str, got int"),
        ("[web]\nmetrics_token = 'short'\n", "web.metrics_token must be a string of at least 16"),
        ("[relay]\nurl_allow_networks = ['10.0.0.0/33']\n", "relay.url_allow_networks: '10.0"),
    ],
)
def test_bad_values_are_refused_precisely(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert message in info.value.message
