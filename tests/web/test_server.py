"""How `loa serve` and `loa demo` run the app: connections that never finish a request head
are closed (a half-open one, a slowloris), the access log never records a token, and
/metrics can need a token. Real server processes on loopback, raw sockets."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from loa.config import Config, with_changes
from loa.web.app import create_app
from loa.web.listen import listen_token
from loa.web.server import redact_tokens, run_options
from tests.conftest import ADMIN, AUTH
from tests.relay.relayfix import free_port

METRICS_TOKEN = "metrics-token-0123456789"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("GET /listen/p.ogg?token=abc HTTP/1.1", "GET /listen/p.ogg?token=[redacted] HTTP/1.1"),
        ("/metrics?x=1&token=abc&y=2", "/metrics?x=1&token=[redacted]&y=2"),
        ("/a?admin_token=abc;TOKEN=def", "/a?admin_token=[redacted];TOKEN=[redacted]"),
        ("/a?tok%65n=abc#frag", "/a?tok%65n=[redacted]#frag"),
        ('"http://h/x?token=abc"', '"http://h/x?token=[redacted]"'),
        ("/a?token=&tokens", "/a?token=&tokens"),  # nothing to hide
        ("/a?tokenless=1", "/a?tokenless=[redacted]"),  # a name with "token" in it: hidden
        ("/a?x=token", "/a?x=token"),
        ("-", "-"),
    ],
)
def test_redact_tokens(text: str, redacted: str) -> None:
    assert redact_tokens(text) == redacted


# -- /metrics with and without web.metrics_token (the app through the test client) ----------


async def test_metrics_stays_open_without_a_token(relay_factory: Any, config: Config) -> None:
    relay = await relay_factory(config)
    async with relay.http.get(relay.url + "/metrics") as resp:
        assert resp.status == 200 and "loa_" in await resp.text()


async def test_metrics_needs_the_token_when_configured(relay_factory: Any, config: Config) -> None:
    config = with_changes(config, web=with_changes(config.web, metrics_token=METRICS_TOKEN))
    relay = await relay_factory(config)
    for how in ({"headers": {"Authorization": f"Bearer {METRICS_TOKEN}"}}, {"headers": AUTH}):
        async with relay.http.get(relay.url + "/metrics", **how) as resp:
            assert resp.status == 200 and "loa_" in await resp.text()
    async with relay.http.get(relay.url + "/metrics", params={"token": METRICS_TOKEN}) as resp:
        assert resp.status == 200
    for how in (
        {},
        {"params": {"token": "wrong"}},
        {"headers": {"Authorization": "Bearer wrong"}},
        {"headers": {"Authorization": f"Basic {METRICS_TOKEN}"}},
    ):
        async with relay.http.get(relay.url + "/metrics", **how) as resp:
            assert resp.status == 401, how
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
            assert (await resp.json())["error"] == {
                "code": "unauthorized",
                "message": "/metrics needs the metrics token: Bearer <token> or ?token=<token>",
            }


async def test_access_log_names_the_client_a_trusted_proxy_spoke_for(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    config = with_changes(config, web=with_changes(config.web, trusted_proxies=("127.0.0.1",)))
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server(**run_options(config.web))
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"X-Forwarded-For": "198.51.100.10"}
            async with http.get(server.make_url("/healthz?token=x"), headers=headers) as resp:
                assert resp.status == 200
    finally:
        await server.close()
    (record,) = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert record.getMessage().startswith("198.51.100.10 ")
    assert '"GET /healthz?token=[redacted] HTTP/1.1" 200' in record.getMessage()
    assert record.remote_address == "198.51.100.10"  # type: ignore[attr-defined]
    assert record.first_request_line == "GET /healthz?token=[redacted] HTTP/1.1"  # type: ignore[attr-defined]


# -- a real `loa serve` ---------------------------------------------------------------------


class Served:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def wait_healthy(proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.returncode is None:
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    raise AssertionError(f"server did not come up:\n{tail(log)}")


async def spawn(args: list[str], port: int, log: Path) -> Served:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", *args, stdout=out, stderr=out
        )
    served = Served(proc, port, log)
    await wait_healthy(proc, served.url, log)
    return served


async def stop(served: Served) -> None:
    if served.proc.returncode is None:
        served.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(served.proc.wait(), 20)
        except TimeoutError:
            served.proc.kill()
            await served.proc.wait()


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Served]:
    port = free_port(__import__("socket").SOCK_STREAM)
    config = tmp_path / "loa.toml"
    config.write_text(
        f'admin_token = "{ADMIN}"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\nheader_timeout_s = 1.0\n'
        f'metrics_token = "{METRICS_TOKEN}"\n'
        f'[relay]\nudp_host = "127.0.0.1"\nudp_port = {free_port()}\n'
        '[[zones]]\nid = "p"\nname = "P"\n'
    )
    served = await spawn(["serve", "--config", str(config)], port, tmp_path / "serve.log")
    yield served
    await stop(served)


async def closed_after(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the server closes the connection (EOF or reset), at most ``limit_s``."""
    t0 = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), limit_s - (time.monotonic() - t0)):
            pass
    except (ConnectionResetError, TimeoutError):
        pass  # closed, or still open at the limit: the caller's assertion says which
    return time.monotonic() - t0


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """A slowloris: one byte at a time, forever (until the server hangs up)."""
    for i in range(10_000):
        writer.write(data[i % len(data) : i % len(data) + 1])
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every_s)


@pytest.mark.e2e
async def test_serve_closes_connections_that_never_finish_a_request_head(serve: Served) -> None:
    t0 = time.monotonic()
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", serve.port)
    loris_r, loris_w = await asyncio.open_connection("127.0.0.1", serve.port)
    loris_w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    dripping = asyncio.create_task(trickle(loris_w, b"abcdef", 0.1))
    try:
        silent_s, loris_s = await asyncio.gather(
            closed_after(silent_r, 8.0), closed_after(loris_r, 8.0)
        )
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
    for name, took in (("half-open", silent_s), ("slowloris", loris_s)):
        assert 0.8 <= took < 4.0, f"{name} connection closed after {took:.2f} s (limit 1 s)"
    # A well-behaved client on a keep-alive connection is answered, and its next request
    # head has the same limit, counted from the response.
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    await asyncio.wait_for(reader.readexactly(length), 5)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    assert 0.8 <= await closed_after(reader, 8.0) < 4.0
    for w in (silent_w, loris_w, writer):
        w.close()
    assert time.monotonic() - t0 < 15
    async with aiohttp.ClientSession() as http, http.get(serve.url + "/healthz") as resp:
        assert resp.status == 200  # the server itself is fine


@pytest.mark.e2e
async def test_serve_access_log_never_records_tokens(serve: Served) -> None:
    listen = listen_token(ADMIN, "p")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{serve.url}/metrics?token={METRICS_TOKEN}") as resp:
            assert resp.status == 200
        async with http.get(f"{serve.url}/metrics?a=1&token=guess-{METRICS_TOKEN}") as resp:
            assert resp.status == 401
        async with http.get(f"{serve.url}/listen/p.ogg?token={listen}") as resp:
            assert resp.status == 200
            assert (await resp.content.readexactly(4)) == b"OggS"
        headers = {"Referer": f"{serve.url}/listen/p.ogg?token={listen}"}
        async with http.get(f"{serve.url}/healthz?admin_token={ADMIN}", headers=headers) as resp:
            assert resp.status == 200
    for _ in range(100):  # the streaming response is logged when its handler ends
        if serve.text().count("[redacted]") >= 5:
            break
        await asyncio.sleep(0.1)
    log = serve.text()
    assert '"GET /metrics?token=[redacted] HTTP/1.1" 200' in log
    assert '"GET /metrics?a=1&token=[redacted] HTTP/1.1" 401' in log
    assert '"GET /listen/p.ogg?token=[redacted] HTTP/1.1" 200' in log
    assert "GET /healthz?admin_token=[redacted] HTTP/1.1" in log
    assert f"{serve.url}/listen/p.ogg?token=[redacted]" in log  # the Referer
    for secret in (METRICS_TOKEN, listen, ADMIN):
        assert secret not in log


@pytest.mark.e2e
@pytest.mark.slow
async def test_demo_redacts_its_access_log_and_times_out_heads(tmp_path: Path) -> None:
    port = free_port(__import__("socket").SOCK_STREAM)
    args = ["demo", "--host", "127.0.0.1", "--port", str(port), "--udp-port", str(free_port())]
    args += ["--data", str(tmp_path / "data"), "--admin-token", ADMIN]
    args += ["--speakers-per-village", "0", "--no-programme"]
    served = await spawn(args, port, tmp_path / "demo.log")
    try:
        t0 = time.monotonic()
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port)
        listen = listen_token(ADMIN, "dai-tu")
        url = f"{served.url}/listen/dai-tu.ogg?token={listen}"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            assert (await resp.content.readexactly(4)) == b"OggS"
        await closed_after(silent_r, 20.0)
        took = time.monotonic() - t0
        silent_w.close()
        # The demo has no config file: the default web.header_timeout_s, 10 s.
        assert 9.0 <= took < 14.0, f"closed after {took:.2f} s"
        log = served.text()
        assert '"GET /listen/dai-tu.ogg?token=[redacted] HTTP/1.1" 200' in log
        assert listen not in log
    finally:
        await stop(served)
