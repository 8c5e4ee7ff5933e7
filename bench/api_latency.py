"""`python -m bench.api_latency`: how long the API takes to put an emergency on air.

Starts `loa serve` on a generated province (N endpoints), then repeats: POST an emergency
(TTS text with the attention chime, to one commune — what the emergency button sends) and
time request → 201; DELETE it. Prints one JSON line: median / p95 / max in ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.relay import RelayApi, RelayProcess, client_session, generate_config
from loa.localservers import free_port

TEXT = "Bão số 3 sắp đổ bộ. Bà con di chuyển đến nhà văn hóa thôn ngay."


async def measure(url: str, token: str, zone: str, runs: int) -> list[float]:
    async with client_session() as http:
        api = RelayApi(http, url, token)
        await api.wait_healthy(30)
        body = {
            "source": {"type": "tts", "text": TEXT, "voice": "vi"},
            "targets": {"zones": [zone]},
            "class": "emergency",
            "chime": True,
        }
        times: list[float] = []
        for _ in range(runs + 3):  # the first few warm up imports and caches
            t0 = time.perf_counter()
            async with http.post(f"{url}/api/v1/broadcasts", json=body, headers=api.headers) as r:
                data = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"POST /api/v1/broadcasts: {r.status} {data}")
            times.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.3)
            await api.stop_broadcast(data["id"])
            await asyncio.sleep(0.2)
        return times[3:]


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api_latency", description=__doc__)
    p.add_argument("--endpoints", type=int, default=200, help="endpoints in the province")
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="loa-api-") as tmp:
        port = free_port()
        text, layout = generate_config(args.endpoints, web_port=port, data_dir=Path(tmp) / "data")
        config = Path(tmp) / "loa.toml"
        config.write_text(text, encoding="utf-8")
        with RelayProcess(config, Path(tmp) / "relay.log"):
            times = asyncio.run(
                measure(
                    f"http://127.0.0.1:{port}", layout.admin_token, layout.communes[0], args.runs
                )
            )
    times.sort()
    result = {
        "endpoints": args.endpoints,
        "runs": len(times),
        "emergency_start_ms": {
            "p50": round(statistics.median(times), 2),
            "p95": round(times[int(0.95 * (len(times) - 1))], 2),
            "max": round(times[-1], 2),
        },
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
