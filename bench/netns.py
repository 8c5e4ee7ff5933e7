"""Network namespaces for the cluster tests (issue 12 item 5, the partition) and the link
bench (``bench.links --netns``, issue 15 item 4): one bridge in the caller's own namespace,
holding an address the servers (relay, Redis, PostgreSQL) listen on, and one namespace per
node or pole joined to it by a veth pair. Cutting a member's link (its bridge-side veth
down) isolates it from everything, as a cable cut or a dead switch port would.

Needs root and iproute2's ``ip``; ``skip_reason()`` says why not when they are missing. Names
carry a random tag, so parallel or leftover runs never collide, and ``close()`` removes
every namespace, veth and the bridge it made, whatever happened (call it in ``finally``).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass


def skip_reason() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (apt-get install -y iproute2)"
    return None


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Member:
    """One node's namespace: its name, its address on the bridge, the bridge-side veth and
    the bridge's own address (the caller's namespace, where its servers listen)."""

    netns: str
    address: str
    link: str
    gateway: str

    def exec_prefix(self) -> tuple[str, ...]:
        """Prefix an argv with this to run it in the namespace (``ip netns exec`` execs it:
        the process id is the command's, so signals reach it directly)."""
        return ("ip", "netns", "exec", self.netns)


class Bridge:
    """The bridge and the namespaces joined to it; see the module docstring."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.network = _free_network()
        hosts = self.network.hosts()
        self.address = str(next(hosts))  # the test's own namespace, on the bridge
        self._hosts = hosts
        self.name = f"lbr{self.tag}"
        self.members: dict[str, Member] = {}
        self._made_bridge = False

    def start(self) -> Bridge:
        ip("link", "add", self.name, "type", "bridge")
        self._made_bridge = True
        ip("addr", "add", f"{self.address}/{self.network.prefixlen}", "dev", self.name)
        ip("link", "set", self.name, "up")
        return self

    def add(self, name: str) -> Member:
        """A namespace for node ``name``, joined to the bridge, loopback up."""
        netns, outer, inner = f"loa{self.tag}{name}", f"lvh{self.tag}{name}", f"lvn{self.tag}{name}"
        address = str(next(self._hosts))
        ip("netns", "add", netns)
        member = Member(netns, address, outer, self.address)
        self.members[name] = member  # from here on close() removes it
        ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", netns)
        ip("link", "set", outer, "master", self.name)
        ip("link", "set", outer, "up")
        inside = ("netns", "exec", netns, "ip")
        ip(*inside, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", inner)
        ip(*inside, "link", "set", inner, "up")
        ip(*inside, "link", "set", "lo", "up")
        return member

    def cut(self, name: str) -> None:
        """Isolate node ``name``: its link to the bridge goes down (nothing in, nothing out)."""
        ip("link", "set", self.members[name].link, "down")

    def heal(self, name: str) -> None:
        ip("link", "set", self.members[name].link, "up")

    def close(self) -> None:
        """Remove every namespace (their veths go with them) and the bridge; idempotent, and
        each step is tried even when another fails."""
        errors = []
        for member in self.members.values():
            for args in (("link", "del", member.link), ("netns", "del", member.netns)):
                try:
                    ip(*args)
                except RuntimeError as exc:
                    if "Cannot find" not in str(exc) and "No such" not in str(exc):
                        errors.append(str(exc))
        self.members.clear()
        if self._made_bridge:
            try:
                ip("link", "del", self.name)
                self._made_bridge = False
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("could not remove the test network: " + "; ".join(errors))


def _free_network() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no address or route of this machine overlaps."""
    used = [
        ipaddress.ip_network(word, strict=False)
        for line in (ip("-4", "-o", "addr") + ip("-4", "route")).splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    for _ in range(100):
        candidate = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(256)}.0/24"
        )
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 network for the test bridge")
