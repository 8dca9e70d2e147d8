"""Durations in definitions: ``30m``, ``12h``, ``5d`` (calendar days) and ``5wd`` (working days as China counts
them: statutory holidays skipped, 调休 make-up days counted; see :mod:`engine.workdays`)."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .clock import SHANGHAI
from .workdays import DEFAULT, WorkCalendar

DURATION_RE = re.compile(r"^\s*(\d+)\s*(m|h|d|wd)\s*$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "wd": "working days"}


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: str  # m | h | d | wd

    @classmethod
    def parse(cls, text: str) -> "Duration":
        match = DURATION_RE.match(str(text))
        if not match:
            raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 5d or 5wd)")
        return cls(int(match.group(1)), match.group(2))

    def after(self, start: dt.datetime, calendar: WorkCalendar | None = None) -> dt.datetime:
        """The moment this long after ``start``; working days are counted in Asia/Shanghai by ``calendar``
        (the definitions' holiday file over ``chinese-calendar``; without one, the package alone)."""
        if self.unit == "m":
            return start + dt.timedelta(minutes=self.amount)
        if self.unit == "h":
            return start + dt.timedelta(hours=self.amount)
        if self.unit == "d":
            return start + dt.timedelta(days=self.amount)
        return (calendar or DEFAULT).add_workdays(start.astimezone(SHANGHAI), self.amount)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"
