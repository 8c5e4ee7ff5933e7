"""Password hashing: scrypt (RFC 7914) with a random salt, encoded as
``scrypt$n$r$p$salt$hash`` so the cost can rise later without breaking stored hashes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets

from loa.errors import BadRequest

SCRYPT_N, SCRYPT_R, SCRYPT_P, SALT_BYTES, KEY_BYTES = 2**14, 8, 1, 16, 32
MIN_PASSWORD = 8


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64 without padding). ~16 MiB and tens of ms: call it
    off the event loop (``hash_password_async``)."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise BadRequest(f"a password needs at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against ``hash_password``'s output. A string that
    is not such an encoding raises ``ValueError`` naming the problem."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("password hash is not of the form scrypt$n$r$p$salt$hash")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError("password hash has a non-numeric parameter or bad base64") from None
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and key):
        raise ValueError(f"password hash has out-of-range scrypt parameters n={n} r={r} p={p}")
    got = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=256 * r * n + 2**20
    )
    return hmac.compare_digest(got, key)


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


async def verify_password_async(password: str, encoded: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        None, verify_password, password, encoded
    )
