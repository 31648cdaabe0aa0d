"""Opaque, unguessable public ids with a type prefix (`thr_3kTMd...`)."""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_RANDOM_LENGTH = 22  # 22 base62 characters ~ 131 bits
ID_MAX_LENGTH = 32


def base62(number: int, width: int = 0) -> str:
    if number < 0:
        raise ValueError("base62 takes a non-negative integer")
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    text = "".join(reversed(digits)) or "0"
    return text.rjust(width, "0")


def random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_id(prefix: str) -> str:
    return f"{prefix}_{random_base62(ID_RANDOM_LENGTH)}"


def looks_like_id(value: object, prefix: str) -> bool:
    """Cheap shape check so garbage never reaches the database as a lookup."""
    return (
        isinstance(value, str)
        and value.startswith(prefix + "_")
        and len(value) <= ID_MAX_LENGTH
        and value[len(prefix) + 1 :].isalnum()
        and value.isascii()
    )


def new_workspace_id() -> str:
    return new_id("ws")


def new_user_id() -> str:
    return new_id("usr")


def new_key_id() -> str:
    return new_id("key")


def new_thread_id() -> str:
    return new_id("thr")


def new_message_id() -> str:
    return new_id("msg")


def new_attachment_id() -> str:
    return new_id("att")


def new_file_id() -> str:
    return new_id("file")


def new_document_id() -> str:
    return new_id("doc")


def new_agent_id() -> str:
    return new_id("agt")


def new_call_id() -> str:
    return new_id("call")
