"""API key format: `tnx_` + 32 random base62 characters + a 6-character CRC32 checksum.

The checksum lets a mistyped or made-up key be refused without touching the database; the first
8 random characters (with `tnx_`) are the key's public prefix, which is how a key is found.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from dataclasses import dataclass

from workspaces.ids import ALPHABET, base62, random_base62

KEY_PREFIX = "tnx_"
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
PREFIX_LENGTH = len(KEY_PREFIX) + 8
KEY_LENGTH = len(KEY_PREFIX) + SECRET_LENGTH + CHECKSUM_LENGTH
_ALPHABET_SET = frozenset(ALPHABET)


def _checksum(secret: str) -> str:
    return base62(zlib.crc32(secret.encode("ascii")), CHECKSUM_LENGTH)


@dataclass(frozen=True)
class ParsedKey:
    raw: str
    prefix: str

    @property
    def digest(self) -> str:
        return hash_key(self.raw)


def generate_key() -> str:
    secret = random_base62(SECRET_LENGTH)
    return f"{KEY_PREFIX}{secret}{_checksum(secret)}"


def parse_key(raw: str) -> ParsedKey | None:
    """The key if it is well formed and its checksum matches, else None (no database involved)."""
    if not isinstance(raw, str) or len(raw) != KEY_LENGTH or not raw.startswith(KEY_PREFIX):
        return None
    body = raw[len(KEY_PREFIX) :]
    if not set(body) <= _ALPHABET_SET:
        return None
    secret, checksum = body[:SECRET_LENGTH], body[SECRET_LENGTH:]
    if not hmac.compare_digest(_checksum(secret), checksum):
        return None
    return ParsedKey(raw=raw, prefix=raw[:PREFIX_LENGTH])


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def digest_matches(raw: str, stored_digest: str) -> bool:
    return hmac.compare_digest(hash_key(raw), stored_digest)
