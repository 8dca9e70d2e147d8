"""Working days as China counts them: statutory holidays are days off, 调休 make-up days are working days.

The ``chinese-calendar`` package (the State Council's yearly notices, 2004 up to its release) is the default;
``org/holidays.yaml`` kept by the admin overrides and extends it (a year the package does not know yet, a
local day off). A year neither knows counts Monday to Friday, and says so: :meth:`WorkCalendar.unknown_years`
for ``civicflow lint``, a logged warning when a duration is counted through it.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

try:  # a hard dependency (pyproject.toml); the guard only keeps a broken install from breaking every import
    import chinese_calendar as _cc
except ImportError:  # pragma: no cover - exercised only on an install without the package
    _cc = None


def package_years() -> frozenset[int]:
    """The years the installed ``chinese-calendar`` has the State Council's holiday notice for."""
    if _cc is None:
        return frozenset()
    return frozenset(day.year for day in _cc.holidays)


def package_version() -> str:
    return getattr(_cc, "__version__", "") if _cc is not None else ""


@dataclass(frozen=True)
class DayEntry:
    """One day of the holiday file: off (a holiday) or on (a make-up working day)."""

    day: dt.date
    working: bool
    name: str = ""


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days. ``days``: the admin's file (wins over the package), ``use_package``:
    whether ``chinese-calendar`` is consulted for the years it knows."""

    days: Mapping[dt.date, DayEntry] = field(default_factory=dict)
    use_package: bool = True
    file: str = "org/holidays.yaml"
    _warned: set[int] = field(default_factory=set, compare=False, repr=False)

    # ------------------------------------------------------------------ what is known
    @property
    def file_years(self) -> frozenset[int]:
        return frozenset(day.year for day in self.days)

    @property
    def package_years(self) -> frozenset[int]:
        return package_years() if self.use_package else frozenset()

    def knows(self, year: int) -> bool:
        return year in self.package_years or year in self.file_years

    def unknown_years(self, years: Iterable[int]) -> list[int]:
        return sorted(y for y in set(years) if not self.knows(y))

    def source_of(self, year: int) -> str:
        """Where the working days of ``year`` come from, for the docs and the admin page."""
        parts = []
        if year in self.package_years:
            parts.append(f"chinese-calendar {package_version()}")
        if year in self.file_years:
            parts.append(self.file)
        return " + ".join(parts) or "Monday to Friday only"

    def warning(self, year: int) -> str:
        known = self.package_years
        span = f"chinese-calendar {package_version()} knows {min(known)}-{max(known)}" if known else \
            "chinese-calendar is not used"
        return (f"working days in {year} count Monday to Friday only: no statutory holidays or 调休 days are known "
                f"for {year} ({span}, {self.file} has none)")

    def warnings(self, today: dt.date, ahead: int = 62) -> list[str]:
        """What ``civicflow lint`` says about the years a duration set from ``today`` may count through."""
        years = {today.year, (today + dt.timedelta(days=ahead)).year}
        return [f"{self.warning(y)}; add its holidays and 调休 days to {self.file} once they are announced, "
                f"or upgrade chinese-calendar" for y in self.unknown_years(years)]

    # ------------------------------------------------------------------ the question
    def is_workday(self, day: dt.date) -> bool:
        entry = self.days.get(day)
        if entry is not None:
            return entry.working
        if day.year in self.package_years:
            return bool(_cc.is_workday(day))  # type: ignore[union-attr]
        if day.year not in self.file_years and day.year not in self._warned:
            self._warned.add(day.year)  # once per year and process: a timer computed every minute says it once
            log.warning("%s", self.warning(day.year))
        return day.weekday() < 5

    def holiday_name(self, day: dt.date) -> str:
        """The name of the holiday or make-up day ``day`` is, or ``""``."""
        entry = self.days.get(day)
        if entry is not None:
            return entry.name
        if day.year in self.package_years:
            on_holiday, name = _cc.get_holiday_detail(day)  # type: ignore[union-attr]
            return str(name or "") if name or on_holiday else ""
        return ""

    def add_workdays(self, start: dt.datetime, amount: int) -> dt.datetime:
        """``amount`` working days after ``start``, same time of day (``start`` in the zone the day is counted in)."""
        moment, left = start, amount
        while left > 0:
            moment += dt.timedelta(days=1)
            if self.is_workday(moment.date()):
                left -= 1
        return moment

    def workdays_between(self, start: dt.date, end: dt.date) -> int:
        """Working days after ``start`` up to and including ``end`` (negative when ``end`` is before)."""
        if end < start:
            return -self.workdays_between(end, start)
        return sum(1 for n in range(1, (end - start).days + 1) if self.is_workday(start + dt.timedelta(days=n)))


#: The calendar with no holiday file: the package alone (durations parsed without definitions use it).
DEFAULT = WorkCalendar()


def _days(first: str, last: str | None) -> list[dt.date]:
    start = dt.date.fromisoformat(first)
    end = dt.date.fromisoformat(last) if last else start
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def _no_effect(day: dt.date, working: bool, use_package: bool, path: list[Any], problem: Any) -> None:
    """A single day that already is what the entry says: most likely a mistyped date."""
    base = WorkCalendar(use_package=use_package, _warned={day.year})  # no file; no warning about the year
    if base.is_workday(day) != working:
        return
    weekday = day.strftime("%A")
    if working:
        problem(path, f"{day.isoformat()} ({weekday}) is a working day already",
                "a 调休 make-up day is a Saturday or Sunday that is worked: check the date")
    else:
        problem(path, f"{day.isoformat()} ({weekday}) is a day off already",
                "a holiday listed here is a day that would otherwise be worked: check the date")


def build(data: Mapping[str, Any], problem: Any, file: str = "org/holidays.yaml") -> WorkCalendar:
    """The calendar of a schema-checked holiday file. ``problem(path, message, hint)`` notes a mistake
    (and returns nothing); the file's positions are the caller's business."""
    days: dict[dt.date, DayEntry] = {}
    where: dict[dt.date, tuple[str, int]] = {}
    for section, working in (("holidays", False), ("workdays", True)):
        for i, item in enumerate(data.get(section) or []):
            path = [section, i]
            if ("date" in item) == ("from" in item or "to" in item) or ("from" in item) != ("to" in item):
                problem(path, "give either 'date' (one day) or 'from' and 'to' (a range)",
                        "e.g. {date: 2027-10-01} or {from: 2027-10-01, to: 2027-10-07}")
                continue
            try:
                dates = _days(item["from"] if "from" in item else item["date"], item.get("to"))
            except ValueError as exc:
                problem(path, f"not a date: {exc}", "write dates as 2027-10-01")
                continue
            if not dates:
                problem(path + ["to"], f"'to' ({item['to']}) is before 'from' ({item['from']})", "")
                continue
            if len(dates) > 31:
                problem(path + ["to"], f"a range of {len(dates)} days", "a holiday lasts at most a few weeks: check the year")
            if "date" in item and dates[0] not in where:
                _no_effect(dates[0], working, bool(data.get("use_package", True)), path, problem)
            for day in dates:
                if day in where:
                    other, j = where[day]
                    problem(path, f"{day.isoformat()} is listed twice (also {other}[{j}])",
                            "a day is either a holiday or a make-up working day, once")
                    continue
                where[day] = (section, i)
                days[day] = DayEntry(day, working, str(item.get("name", "")))
    return WorkCalendar(days=days, use_package=bool(data.get("use_package", True)), file=file)
