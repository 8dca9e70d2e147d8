"""Deployment settings read from the environment (secret key, cookies, proxies, timers, server threads, database).

Each reader checks its value and raises :class:`SettingsError` with a sentence naming the
variable and what it must be, so a typo stops the start with one line instead of a traceback
or, worse, a server running with a setting silently ignored.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from ..errors import EngineError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(EngineError):
    """An environment variable has a value Civicflow cannot use (for whoever deploys it)."""


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    raw = environ.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _whole(environ: Mapping[str, str], name: str, minimum: int) -> int | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingsError(f"{name} must be a whole number >= {minimum}, not {raw!r}")
    return value


def _seconds(environ: Mapping[str, str], name: str) -> float | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise SettingsError(f"{name} must be a number of seconds >= 0 (0: never), not {raw!r}")
    return value


def app_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The Flask config keys set by the environment; variables that are not set are left out."""
    config: dict[str, Any] = {}
    secret = environ.get("CIVICFLOW_SECRET_KEY")
    if secret is not None:
        # Short keys make signed session cookies guessable; refuse rather than run weakly.
        if len(secret.strip()) < 16:
            raise SettingsError("CIVICFLOW_SECRET_KEY must be at least 16 characters "
                                "(e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        config["SECRET_KEY"] = secret.strip()
    secure = _flag(environ, "CIVICFLOW_SECURE_COOKIES")
    if secure is not None:
        config["SESSION_COOKIE_SECURE"] = secure
        if secure:
            config["PREFERRED_URL_SCHEME"] = "https"
    proxies = _whole(environ, "CIVICFLOW_TRUSTED_PROXIES", 0)
    if proxies is not None:
        config["TRUSTED_PROXIES"] = proxies
    tick = _seconds(environ, "CIVICFLOW_TICK_SECONDS")
    if tick is not None:
        config["TICK_SECONDS"] = tick
    url = database_url(environ)
    if url is not None:
        config["STORE"] = url
    return config


DATABASE_SCHEMES = ("postgresql://", "postgres://")


def database_url(environ: Mapping[str, str]) -> str | None:
    """The PostgreSQL database to keep everything in (``CIVICFLOW_DATABASE_URL``); None: the TinyDB file."""
    raw = environ.get("CIVICFLOW_DATABASE_URL")
    if raw is None or not raw.strip():
        return None
    url = raw.strip()
    if not url.startswith(DATABASE_SCHEMES):
        # Never echo the value: it may hold a password.
        raise SettingsError("CIVICFLOW_DATABASE_URL must be a PostgreSQL URL, "
                            "postgresql://user:password@host:5432/dbname (unset it to use the TinyDB file)")
    return url


def threads(environ: Mapping[str, str], default: int = 8) -> int:
    """Worker threads of the production server (``CIVICFLOW_THREADS``)."""
    value = _whole(environ, "CIVICFLOW_THREADS", 1)
    return default if value is None else value


def log_level(environ: Mapping[str, str]) -> int:
    """The level of the server's log on stderr (``CIVICFLOW_LOG_LEVEL``, default INFO)."""
    raw = environ.get("CIVICFLOW_LOG_LEVEL", "")
    name = raw.strip().upper() or "INFO"
    if name not in LOG_LEVELS:
        raise SettingsError(f"CIVICFLOW_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return logging.getLevelName(name)
