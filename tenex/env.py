"""Environment helpers: every setting is read here and fails loudly on a bad value."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = env_str(name, default) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def parse_database_url(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Turn postgres://user:pass@host:port/db?opt=v into a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"{name} must be a postgres:// or postgresql:// URL, got scheme {parts.scheme!r}"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgres://user@host:5432/tenex")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port") from None
    options = dict(parse_qsl(parts.query))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": options,
    }


def read_secret_file(path: Path) -> str | None:
    """A secret kept in a file (first line, stripped), or None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    secret = text.strip()
    if not secret:
        raise ImproperlyConfigured(f"{path} is empty: delete it or put a secret key in it")
    return secret


def check_redis_url(url: str, *, name: str = "REDIS_URL") -> str:
    from tenex.redis_clients import cluster_nodes, is_cluster

    parts = urlsplit(url)
    if is_cluster(url):
        try:
            cluster_nodes(url)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    elif parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(
            f"{name} must be a redis://, rediss:// or (a Redis Cluster) redis+cluster:// URL, got {url!r}"
        )
    return url


RATE_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
                "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(text: str) -> tuple[int, int]:
    """`"6000/min"` as (6000, 60): requests allowed per period of seconds (DRF's rate format)."""
    count, slash, period = text.strip().partition("/")
    if not slash or period.strip().lower() not in RATE_PERIODS or not count.strip().isdigit() or int(count) < 1:
        raise ValueError(f"a rate is N/s, N/min, N/hour or N/day with N >= 1, got {text!r}")
    return int(count), RATE_PERIODS[period.strip().lower()]


def env_rate(name: str, default: str) -> str:
    value = env_str(name, default) or default
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None
    return value
