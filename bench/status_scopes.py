"""`python -m bench.status_scopes`: what one push of the scoped status socket costs.

A province of ``--communes`` communes of ``--per-commune`` poles, two broadcasts (one to the
province, one to a commune), an admin dashboard and one per commune: each push builds every
view once and cuts it per scope (``loa.web.live``), then serialises each scope's snapshot.
Prints one JSON line: the median and max of ``--runs`` pushes, in ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from loa.access import User
from loa.config import Config, EndpointSpec, WebConfig, ZoneSpec
from loa.relay.core.priority import BroadcastSpec, Priority
from loa.relay.node import Node
from loa.streamer.tone import ToneSource
from loa.web import live


def province(communes: int, per_commune: int, data_dir: Path) -> Config:
    zones = [ZoneSpec("p", "Tỉnh")]
    endpoints = []
    for c in range(communes):
        zones.append(ZoneSpec(f"c{c}", f"Xã {c}", parent="p"))
        endpoints += [
            EndpointSpec(f"c{c}-e{e}", f"Loa {c}-{e}", f"c{c}", token=f"t{c}-{e}")
            for e in range(per_commune)
        ]
    return Config(
        web=WebConfig(port=0), data_dir=data_dir, zones=tuple(zones), endpoints=tuple(endpoints)
    )


async def measure(communes: int, per_commune: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(province(communes, per_commune, Path(tmp)))
        for bc_id, zone, priority in (
            ("prov", "p", Priority.SCHEDULED),
            ("c0", "c0", Priority.LIVE),
        ):
            spec = BroadcastSpec(
                id=bc_id,
                priority=priority,
                origin_zone=zone,
                target_zones=frozenset({zone}),
                target_endpoints=frozenset(),
            )
            await node.start_broadcast(
                spec, ToneSource(1000), what=bc_id, source_kind="tone", created_by="bench"
            )
        users = [None] + [User(f"op{c}", "operator", f"c{c}", False) for c in range(communes)]
        result: dict[str, float] = {"poles": communes * per_commune, "scopes": len(users)}
        for label, who in (("admin_only", users[:1]), ("all_scopes", users)):
            took = []
            for _ in range(runs):
                t0 = time.perf_counter()
                views = live.parts(node)
                for user in who:
                    json.dumps(live.snapshot(node, user, views), ensure_ascii=False)
                took.append((time.perf_counter() - t0) * 1000)
            result[f"{label}_median_ms"] = round(statistics.median(took), 2)
            result[f"{label}_max_ms"] = round(max(took), 2)
        await node.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--communes", type=int, default=50)
    parser.add_argument("--per-commune", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.communes, args.per_commune, args.runs))))


if __name__ == "__main__":
    main()
