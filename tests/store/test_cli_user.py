"""`loa user add|passwd|token|list` through main(argv) on temporary data directories."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

import loa.__main__ as cli
from loa.store import DB_NAME, Store
from loa.web.auth import verify_password


@pytest.fixture
def data(tmp_path: Path) -> Path:
    async def seed() -> None:
        async with Store(tmp_path / DB_NAME) as store:
            await store.zones.add("p", "Tỉnh P")
            await store.zones.add("c0", "Xã 0", "p")

    asyncio.run(seed())
    return tmp_path


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "", tty: bool = False
) -> int:
    monkeypatch.setattr("sys.stdin", Terminal(stdin) if tty else io.StringIO(stdin))
    return cli.main(argv)


def account(data: Path, username: str) -> object:
    async def get() -> object:
        async with Store(data / DB_NAME) as store:
            return await store.users.get(username)

    return asyncio.run(get())


def test_add_with_password_on_stdin_then_list(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "user",
        "add",
        "op",
        "--role",
        "operator",
        "--zone",
        "c0",
        "--emergency",
        "--password-stdin",
        "--data",
        str(data),
    ]
    assert run(argv, monkeypatch, "mật khẩu dài\n") == 0
    acc = account(data, "op")
    assert (acc.role, acc.zone, acc.emergency_right) == ("operator", "c0", True)  # type: ignore[attr-defined]
    assert verify_password("mật khẩu dài", acc.password_hash)  # type: ignore[attr-defined]
    capsys.readouterr()
    assert run(["user", "list", "--data", str(data)], monkeypatch) == 0
    assert capsys.readouterr().out == "op\toperator\tc0\temergency\n"


def test_add_errors_are_precise(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["user", "add", "op", "--password-stdin", "--data", str(data)]
    assert run([*base, "--role", "operator"], monkeypatch, "long enough\n") == 2
    assert "an operator needs a zone" in capsys.readouterr().err
    assert run([*base, "--role", "operator", "--zone", "mars"], monkeypatch, "long enough\n") == 2
    assert capsys.readouterr().err == "loa: zone 'mars' does not exist\n"
    assert run([*base, "--role", "viewer"], monkeypatch, "\n") == 2
    assert capsys.readouterr().err == "loa: no password on stdin\n"
    assert run([*base, "--role", "viewer"], monkeypatch, "short\n") == 2
    assert capsys.readouterr().err == "loa: a password needs at least 8 characters\n"


def test_passwd_prompts_twice(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        ["user", "add", "v", "--role", "viewer", "--password-stdin", "--data", str(data)],
        monkeypatch,
        "first password\n",
    )
    answers = iter(["second password", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert run(["user", "passwd", "v", "--data", str(data)], monkeypatch, tty=True) == 0
    assert verify_password("second password", account(data, "v").password_hash)  # type: ignore[attr-defined]
    answers = iter(["third password", "typo password"])
    assert run(["user", "passwd", "v", "--data", str(data)], monkeypatch, tty=True) == 2
    assert capsys.readouterr().err == "loa: the two passwords differ\n"
    assert (
        run(
            ["user", "passwd", "ghost", "--password-stdin", "--data", str(data)],
            monkeypatch,
            "whatever12\n",
        )
        == 2
    )
    assert capsys.readouterr().err == "loa: user 'ghost' does not exist\n"


def test_token_is_printed_once_and_works(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        ["user", "add", "v", "--role", "viewer", "--password-stdin", "--data", str(data)],
        monkeypatch,
        "first password\n",
    )
    capsys.readouterr()
    assert run(["user", "token", "v", "--label", "grafana", "--data", str(data)], monkeypatch) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert len(token) == 43 and "shown once" in out.err

    async def check() -> tuple[str | None, list[str]]:
        async with Store(data / DB_NAME) as store:
            acc = await store.users.by_token(token)
            return (acc.username if acc else None), [t.label for t in await store.users.tokens()]

    assert asyncio.run(check()) == ("v", ["grafana"])


def test_add_reads_a_password_file(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = data / "pw.txt"
    secret.write_text("mật khẩu trong tệp\nignored second line\n", encoding="utf-8")
    argv = ["user", "add", "f", "--role", "viewer", "--data", str(data)]
    assert run([*argv, "--password-file", str(secret)], monkeypatch, tty=True) == 0
    assert verify_password("mật khẩu trong tệp", account(data, "f").password_hash)  # type: ignore[attr-defined]
    capsys.readouterr()
    argv = ["user", "add", "g", "--role", "viewer", "--data", str(data), "--password-file"]
    assert run([*argv, str(data / "missing.txt")], monkeypatch) == 2
    missing = data / "missing.txt"
    assert capsys.readouterr().err == f"loa: cannot read {missing}: No such file or directory\n"
    (data / "empty.txt").write_text("")
    assert run([*argv, str(data / "empty.txt")], monkeypatch) == 2
    assert capsys.readouterr().err == f"loa: no password in {data / 'empty.txt'}\n"
    (data / "bin.txt").write_bytes(b"\xff\xfe\x00password")
    assert run([*argv, str(data / "bin.txt")], monkeypatch) == 2
    assert capsys.readouterr().err == f"loa: {data / 'bin.txt'} is not UTF-8 text\n"
    assert run(["user", "list", "--data", str(data)], monkeypatch) == 0
    assert capsys.readouterr().out == "f\tviewer\t-\t-\n"  # nothing half-made for g


def test_add_without_a_terminal_reads_stdin(data: Path) -> None:
    """A real process whose stdin is a pipe (a script, ssh without -t): no prompt, no crash;
    the password is stdin's first line."""
    import subprocess
    import sys

    argv = [
        sys.executable,
        "-m",
        "loa",
        "user",
        "add",
        "s",
        "--role",
        "viewer",
        "--data",
        str(data),
    ]
    done = subprocess.run(
        argv, input="từ ống dẫn 123\n", capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "loa: user s added (viewer)\n"
    assert "Traceback" not in done.stderr and "Password" not in done.stderr
    assert verify_password("từ ống dẫn 123", account(data, "s").password_hash)  # type: ignore[attr-defined]
    nothing = subprocess.run(
        [*argv[:5], "t", *argv[6:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (nothing.returncode, nothing.stderr) == (2, "loa: no password on stdin\n")
