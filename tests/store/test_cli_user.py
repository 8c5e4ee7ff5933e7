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


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
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
    assert run(["user", "passwd", "v", "--data", str(data)], monkeypatch) == 0
    assert verify_password("second password", account(data, "v").password_hash)  # type: ignore[attr-defined]
    answers = iter(["third password", "typo password"])
    assert run(["user", "passwd", "v", "--data", str(data)], monkeypatch) == 2
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
