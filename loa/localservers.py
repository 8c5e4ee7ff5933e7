"""Throwaway ``redis-server`` and PostgreSQL instances on free loopback ports in temporary
directories: what the tests, the benches and a local cluster demo run against. They never
use a service the machine happens to run on 6379 or 5432.

Each server is a child process this object owns: ``start()`` returns once it answers,
``stop()`` ends it (politely, then SIGKILL) and ``kill()`` ends it at once, as a crash would;
``start()`` again brings it back on the same port and data directory (a Redis restart, a
database failover). ``close()`` stops it and removes its directory.

PostgreSQL refuses to run as root, so when this process is root, ``initdb`` and ``postgres``
run as an unprivileged system user (``postgres``, which Debian's package creates) that owns
the temporary directory; clients connect through the unix socket in that directory or over
TCP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from loa.errors import MissingDependency

RESERVED_PORTS = frozenset({5432, 6379})  # the machine's own services: never ours
START_TIMEOUT_S = 30.0


LOWEST_PORT = 15000  # below: the services a machine tends to run (NATS 4222, 5432, 6379, 8080 …)


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's ephemeral ports (Linux's default where it cannot be read)."""
    try:
        with open(path) as f:
            low, high = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port of ``kind`` (TCP by default, or ``socket.SOCK_DGRAM``) nobody holds now, for a
    server started later on it; never 5432 or 6379.

    Chosen at random *below* the kernel's ephemeral range: a port the kernel handed out
    (``bind`` to port 0) goes back to that pool when we close it, and any process's next
    client socket may take it before our server binds it (a cluster test failed so, with
    a bench's 1,000 speaker sockets beside it: "cannot bind UDP …: Address already in
    use"). Nothing takes a port below the range unless asked for it by number."""
    low, high = ephemeral_range()
    if low >= LOWEST_PORT + 1000:
        bottom, top = LOWEST_PORT, low
    else:  # a range set low: above it, else (the whole space ephemeral) the kernel's choice
        bottom, top = max(LOWEST_PORT, high + 1), 65536
    rng = random.SystemRandom()
    for _ in range(200 if top - bottom >= 1000 else 0):
        port = rng.randrange(bottom, top)
        if port not in RESERVED_PORTS and _bindable(host, port, kind):
            return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port
    raise OSError("no free port found")


def _bindable(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def postgres_bindir(candidates: Sequence[Path] | None = None) -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_isready``: the one on PATH, else
    the newest ``/usr/lib/postgresql/<version>/bin`` (where Debian puts them, off PATH)."""
    found = shutil.which("initdb")
    if found and candidates is None:
        return Path(found).resolve().parent
    if candidates is None:
        candidates = list(Path("/usr/lib/postgresql").glob("*/bin"))

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    for bindir in sorted(candidates, key=version, reverse=True):
        if all((bindir / b).is_file() for b in ("initdb", "postgres", "pg_isready")):
            return bindir
    raise MissingDependency(
        "PostgreSQL's server binaries (initdb, postgres) are not installed; "
        "on Debian/Ubuntu: apt-get install -y postgresql"
    )


def _wait_until(
    check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{tail}")
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer within {START_TIMEOUT_S:.0f} s")


class _Child:
    """A server process: start once ready, stop, kill, restart on the same port and files."""

    name = "server"

    def __init__(self, root: Path | None) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix=f"loa-{self.name}-")) if root is None else root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, argv: list[str], user: str | None = None) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=user,
                start_new_session=True,  # a ^C in the terminal reaches us, not the server
            )
        finally:
            log.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the server (SIGTERM, then SIGKILL after ``timeout_s``); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stop_signal = signal.SIGTERM

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer(_Child):
    """``redis-server`` on 127.0.0.1:<free port>, nothing persisted."""

    name = "redis"

    def __init__(
        self, root: Path | None = None, binary: str | None = None, *, also_on: Sequence[str] = ()
    ) -> None:
        super().__init__(root)
        self.also_on = tuple(also_on)  # more addresses to listen on (a test's bridge)
        path = binary or shutil.which("redis-server")
        if path is None:
            raise MissingDependency(
                "redis-server is not installed; on Debian/Ubuntu: apt-get install -y redis-server"
            )
        self.binary = path

    @property
    def url(self) -> str:
        return self.url_on("127.0.0.1")

    def url_on(self, address: str) -> str:
        """Its URL through ``address`` (127.0.0.1 or one of ``also_on``)."""
        return f"redis://{address}:{self.port}/0"

    def start(self) -> RedisServer:
        if self.running:
            return self
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *self.also_on]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.root)]
        argv += ["--daemonize", "no", "--loglevel", "warning"]
        if self.also_on:  # clients beyond loopback (a test's own bridge): no password here
            argv += ["--protected-mode", "no"]
        self.proc = self._spawn(argv)
        _wait_until(self._pong, f"redis-server on port {self.port}", self.proc, self.log_path)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class PostgresServer(_Child):
    """A PostgreSQL cluster made by ``initdb`` in a temporary directory; ``postgres`` listens on
    127.0.0.1:<free port> and on a unix socket in that directory. Trust authentication, the
    C locale and UTF-8; durability settings off (a test server, not a production one)."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, then exit
    superuser = "loa"

    def __init__(
        self, root: Path | None = None, bindir: Path | None = None, *,
        also_on: Sequence[str] = (), trust: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """``also_on``: more addresses to listen on; ``trust``: the networks (CIDR) whose
        clients may connect over TCP besides 127.0.0.1 (a test's bridge)."""
        super().__init__(root)
        self.also_on, self.trust = tuple(also_on), tuple(trust)
        self.bindir = bindir or postgres_bindir()
        self.data = self.root / "data"
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._initialised = False

    def url(self, dbname: str = "postgres", *, tcp: bool = False, address: str = "") -> str:
        """A libpq URL for ``dbname``: over the unix socket, or TCP when ``tcp`` (through
        ``address``, 127.0.0.1 or one of ``also_on``)."""
        if tcp or address:
            return f"postgresql://{self.superuser}@{address or '127.0.0.1'}:{self.port}/{dbname}"
        return f"postgresql://{self.superuser}@/{dbname}?host={self.root}&port={self.port}"

    def start(self) -> PostgresServer:
        if self.running:
            return self
        if not self._initialised:
            self._initdb()
        argv = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        listen = ",".join(("127.0.0.1", *self.also_on))
        argv += ["-k", str(self.root), "-c", f"listen_addresses={listen}"]
        for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
            argv += ["-c", setting]
        argv += ["-c", "max_connections=200", "-c", "shared_buffers=32MB"]
        self.proc = self._spawn(argv, self.user)
        what = f"postgres on port {self.port}"
        _wait_until(self._ready, what, self.proc, self.log_path)
        return self

    def _initdb(self) -> None:
        argv = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser]
        argv += ["--auth=trust", "--locale=C", "--encoding=UTF8", "--no-sync"]
        done = subprocess.run(argv, capture_output=True, user=self.user, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {(done.stdout + done.stderr).decode()[-2000:]}")
        if self.trust:
            with (self.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.writelines(f"host all all {network} trust\n" for network in self.trust)
        self._initialised = True

    def _ready(self) -> bool:
        argv = [str(self.bindir / "pg_isready"), "-q", "-h", str(self.root), "-p", str(self.port)]
        with contextlib.suppress(subprocess.TimeoutExpired):
            return subprocess.run(argv, timeout=5, check=False).returncode == 0
        return False


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise MissingDependency("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")
