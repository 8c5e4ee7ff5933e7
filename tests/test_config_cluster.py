"""``[cluster]`` and ``[store]`` (issue 12 item 1): cluster mode needs a shared PostgreSQL
store and says so; a single node needs neither Redis nor PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from loa import config as cfg
from loa.errors import ConfigError
from loa.store import Store

CLUSTER = """
[cluster]
redis_url = "redis://:secret@127.0.0.1:6380/0"
node_id = "hn-1"
public_url = "http://10.0.0.11:8080"
"""
PG = '[store]\nurl = "postgresql://loa:pw@10.0.0.5:5432/loa"\n'


def load(tmp_path: Path, text: str) -> cfg.Config:
    path = tmp_path / "loa.toml"
    path.write_text(text, encoding="utf-8")
    return cfg.load(path, env={})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_single_node_default_is_sqlite_without_redis(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.cluster is None
    assert config.store.url is None and not config.store.shared
    store = Store.for_config(config)
    assert store.dialect == "sqlite" and store.path == Path("data") / "loa.db"


def test_a_cluster_node(tmp_path: Path) -> None:
    config = load(tmp_path, CLUSTER + PG)
    assert config.cluster is not None
    assert config.cluster.node_id == "hn-1"
    assert config.cluster.capacity == 1000 and config.cluster.name == "loa"
    assert config.cluster.commune_depth == 1 and config.cluster.admit_per_s == 500
    assert config.store.shared
    assert Store.for_config(config).dialect == "postgresql"
    # passwords stay out of logs
    assert "secret" not in repr(config) and ":pw@" not in repr(config)
    assert "loa:***@10.0.0.5" in repr(config.store)


def test_store_url_alone_is_a_single_node_on_that_database(tmp_path: Path) -> None:
    config = load(tmp_path, '[store]\nurl = "sqlite:///elsewhere/loa.db"\n')
    assert config.cluster is None
    assert Store.for_config(config).path == Path("elsewhere/loa.db")


def test_cluster_refuses_sqlite(tmp_path: Path) -> None:
    message = refusal(tmp_path, CLUSTER)
    assert message.startswith("[cluster] needs a database the nodes share")
    assert "[store] url = 'postgresql://" in message and "SQLite file in data_dir" in message
    message = refusal(tmp_path, CLUSTER + '[store]\nurl = "sqlite:////var/lib/loa.db"\n')
    assert "the store is now a SQLite file" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("redis_url", "http://127.0.0.1:6379"), "[cluster]: redis_url must be redis://"),
        (("node_id", "node one"), "[cluster]: node_id must be 1-64 letters"),
        (("node_id", ""), "[cluster]: node_id must be 1-64 letters"),
        (("public_url", "10.0.0.11:8080"), "[cluster]: public_url must be the http(s) URL"),
        (("public_url", "http://10.0.0.11:99999"), "[cluster]: public_url must be the http(s)"),
        (("public_url", "http://h:8080/loa"), "[cluster]: public_url must have no path"),
        (("capacity", 0), "[cluster]: capacity must be 1..1000000 speakers, got 0"),
        (("commune_depth", -1), "[cluster]: commune_depth must be 0..10"),
        (("admit_per_s", 0), "[cluster]: admit_per_s must be 1..100000, got 0"),
        (("name", "a:b"), "[cluster]: name must be 1-64"),
    ],
)
def test_cluster_values_are_checked(
    tmp_path: Path, change: tuple[str, object], expected: str
) -> None:
    key, value = change
    lines = [
        f"{key} = {value!r}" if line.startswith(f"{key} =") else line
        for line in CLUSTER.splitlines()
    ]
    if not any(line.startswith(f"{key} =") for line in CLUSTER.splitlines()):
        lines.append(f"{key} = {value!r}")
    text = "\n".join(lines).replace("'", '"') + "\n" + PG
    assert expected in refusal(tmp_path, text)


def test_missing_and_unknown_cluster_keys(tmp_path: Path) -> None:
    text = CLUSTER.replace('node_id = "hn-1"\n', "") + PG
    assert refusal(tmp_path, text) == "[cluster].node_id: missing (required)"
    assert refusal(tmp_path, CLUSTER + "leader = true\n" + PG) == "[cluster].leader: unknown key"
    assert refusal(tmp_path, PG + "pool = 4\n") == "[store].pool: unknown key"


def test_store_url_scheme(tmp_path: Path) -> None:
    message = refusal(tmp_path, '[store]\nurl = "mysql://u:hidden@h/db"\n')
    assert message.startswith("[store]: url must start with sqlite:/// or postgresql://")
    assert "hidden" not in message
