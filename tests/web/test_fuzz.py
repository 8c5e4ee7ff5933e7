"""Schema and server agree, proven by a fuzzer: schemathesis (``st run``) against a real
``loa serve`` on loopback, every check on, a bounded number of examples per operation.

Zero 5xx, zero answers that break the document, zero valid requests refused (the few
operations whose refusals are about meaning may answer 422: see schemathesis.toml), every
invalid one refused with a 4xx, 405s that carry the right ``Allow``. WHIP and WHEP are left
out (their bodies are SDP, tested in tests/streamer/test_whip.py and tests/relay/test_whep.py),
and so are the two WebSocket upgrades (not request/response). fuzz_hooks.py keeps every URL
and RTP address the fuzzer makes up on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loa.localservers import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOKEN = "fuzz-admin-token"
MAX_EXAMPLES = 15  # per operation and phase: about 30 s on an idle 2-core machine
SEED = os.environ.get("LOA_FUZZ_SEED", "20261203")  # fixed: a failure reproduces
EXCLUDED = r"^/(whip|whep|speaker|status/ws)"

CONFIG = """\
admin_token = "{token}"
data_dir = "{data}"
[web]
host = "127.0.0.1"
port = {port}
[relay]
udp_host = "127.0.0.1"
udp_port = 0
# fuzz_hooks points made-up stream URLs at 127.0.0.1: let them through the target check.
url_allow_networks = ["127.0.0.1"]
[[zones]]
id = "p"
name = "Tỉnh P"
[[zones]]
id = "c0"
name = "Xã 0"
parent = "p"
[[zones]]
id = "c1"
name = "Xã 1"
parent = "p"
[[endpoints]]
id = "c0-e0"
name = "Loa 0"
zone = "c0"
token = "tok-c0-e0"
[[endpoints]]
id = "c0-e1"
name = "Loa 1"
zone = "c0"
token = "tok-c0-e1"
[[endpoints]]
id = "rtp0"
name = "RTP"
zone = "c1"
kind = "rtp"
address = "127.0.0.1:9"
"""


def request(url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {TOKEN}"})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A real ``loa serve`` process on loopback, seeded with the ids schemathesis.toml names."""
    port = free_port()
    config = tmp_path / "loa.toml"
    config.write_text(CONFIG.format(token=TOKEN, data=tmp_path / "data", port=port), "utf-8")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loa", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request(url + "/healthz")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.2)
        user = {"username": "op", "password": "mật-khẩu-op", "role": "operator", "zone": "c0"}
        request(url + "/api/v1/users", user)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, "loa serve did not shut down cleanly on SIGTERM"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_server_and_document_agree(server: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "--no-color",
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{server}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        "--exclude-path-regex",
        EXCLUDED,
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--max-failures",
        "50",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.web.fuzz_hooks",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=840, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "passed" in report and "failures" not in report.split("SUMMARY")[-1], report
    tested = int(report.split("Tested:")[1].split()[0])
    assert tested >= 45, report  # every declared operation but the excluded ones
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "unhandled error" not in log, log[-5000:]
    health = request(server + "/healthz")
    assert isinstance(health, dict) and health["status"] == "ok"
