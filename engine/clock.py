"""The engine's notion of "now": Asia/Shanghai, injectable so tests never sleep."""
from __future__ import annotations

import datetime as dt
from typing import Callable
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

Clock = Callable[[], dt.datetime]


def now() -> dt.datetime:
    return dt.datetime.now(SHANGHAI)


class FrozenClock:
    """A clock for tests: ``clock = FrozenClock("2026-11-27T09:00"); clock.advance(days=5)``."""

    def __init__(self, start: str | dt.datetime = "2026-11-27T09:00:00"):
        if isinstance(start, str):
            start = dt.datetime.fromisoformat(start)
        self.current = start if start.tzinfo else start.replace(tzinfo=SHANGHAI)

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> dt.datetime:
        self.current += dt.timedelta(**delta)
        return self.current


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")
