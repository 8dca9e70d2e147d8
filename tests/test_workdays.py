"""Working days as China counts them (issue 12, point 3): ``5wd`` skips statutory holidays and counts 调休 make-up
days, from the chinese-calendar package and the admin's org/holidays.yaml over it; a year neither knows counts
Monday to Friday and says so. Through the calendar, the loader, the CLI and the pages on every store."""
from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.clock import SHANGHAI, FrozenClock
from engine.durations import Duration
from engine.errors import DefinitionError
from engine.loader import load_definitions
from engine.workdays import DEFAULT, WorkCalendar, package_years
from engine.web import create_app
from tests.conftest import STORES, Browser, add_users, case, started, store_location
from tests.test_cli import civicflow

ROOT = Path(__file__).resolve().parents[1]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def wd(amount: int, start: str, calendar: WorkCalendar | None = None) -> str:
    return Duration(amount, "wd").after(at(start), calendar).isoformat(timespec="minutes")


def definitions_with(tmp_path: Path, holidays: str | None) -> Path:
    """A copy of the shipped definitions with ``holidays`` as org/holidays.yaml (None: no file)."""
    root = tmp_path / "defs"
    for part in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / part, root / part)
    target = root / "org" / "holidays.yaml"
    if holidays is None:
        target.unlink()
    else:
        target.write_text(holidays, encoding="utf-8")
    return root


# --------------------------------------------------------------------------- the package's years

def test_the_package_knows_2025_and_2026():
    assert {2025, 2026} <= package_years()
    assert DEFAULT.knows(2026) and DEFAULT.source_of(2026).startswith("chinese-calendar")


def test_national_day_2025_skips_the_holiday_week_and_counts_the_make_up_sunday():
    # Friday 26 Sep; Sunday 28 Sep is worked (调休), 1-8 Oct are off (国庆 + 中秋), Saturday 11 Oct is worked
    assert DEFAULT.is_workday(dt.date(2025, 9, 28)) and not DEFAULT.is_workday(dt.date(2025, 10, 8))
    assert wd(1, "2025-09-26T09:00") == "2025-09-28T09:00+08:00"
    assert wd(5, "2025-09-26T09:00") == "2025-10-10T09:00+08:00"  # Monday to Friday would say 3 October
    assert wd(2, "2025-10-09T17:30") == "2025-10-11T17:30+08:00"  # the make-up Saturday counts
    assert wd(3, "2025-10-09T17:30") == "2025-10-13T17:30+08:00"


def test_national_day_2026_and_its_make_up_days():
    # 1-7 Oct off, Sunday 20 Sep and Saturday 10 Oct worked
    assert wd(1, "2026-09-19T10:00") == "2026-09-20T10:00+08:00"
    assert wd(3, "2026-09-30T09:00") == "2026-10-10T09:00+08:00"
    assert DEFAULT.workdays_between(dt.date(2026, 9, 30), dt.date(2026, 10, 10)) == 3
    assert DEFAULT.workdays_between(dt.date(2026, 10, 10), dt.date(2026, 9, 30)) == -3


def test_spring_festival_2025_and_2026_with_their_make_up_weekends():
    # 2025: 28 Jan - 4 Feb off; Sunday 26 Jan and Saturday 8 Feb worked
    assert wd(1, "2025-01-24T09:00") == "2025-01-26T09:00+08:00"
    assert wd(1, "2025-01-27T09:00") == "2025-02-05T09:00+08:00"
    assert wd(1, "2025-02-07T09:00") == "2025-02-08T09:00+08:00"
    # 2026: 15-23 Feb off; Saturdays 14 and 28 Feb worked
    assert wd(1, "2026-02-13T09:00") == "2026-02-14T09:00+08:00"
    assert wd(2, "2026-02-13T09:00") == "2026-02-24T09:00+08:00"
    assert wd(1, "2026-02-27T09:00") == "2026-02-28T09:00+08:00"
    assert DEFAULT.holiday_name(dt.date(2026, 2, 17)) == "Spring Festival"


def test_working_days_count_in_shanghai_time():
    # 20:00 UTC on Tuesday 30 Sep 2025 is already Wednesday 1 Oct in Shanghai
    start = dt.datetime(2025, 9, 30, 20, 0, tzinfo=dt.timezone.utc)
    assert Duration(1, "wd").after(start).isoformat(timespec="minutes") == "2025-10-09T04:00+08:00"


# --------------------------------------------------------------------------- the admin's file

HOLIDAYS = """\
use_package: true
holidays:
  - {date: 2026-12-01, name: 社区换届选举日}
  - {from: 2027-10-01, to: 2027-10-07, name: 国庆节}
workdays:
  - {date: 2026-10-04, name: 补班}
  - {date: 2027-09-26, name: 国庆节调休}
"""


def test_the_holiday_file_overrides_the_package_and_extends_it_to_a_year_it_does_not_know(tmp_path: Path):
    calendar = load_definitions(definitions_with(tmp_path, HOLIDAYS)).calendar
    assert not calendar.is_workday(dt.date(2026, 12, 1))  # a local day off on a Tuesday
    assert calendar.is_workday(dt.date(2026, 10, 4))  # a day of the 2026 National Day week made a working day
    assert wd(5, "2026-11-27T09:00", calendar) == "2026-12-07T09:00+08:00"  # the package alone: 4 December
    assert wd(5, "2026-11-27T09:00") == "2026-12-04T09:00+08:00"
    assert 2027 not in package_years()  # chinese-calendar 1.11 stops at 2026: 2027 comes from the file
    assert calendar.knows(2027) and calendar.source_of(2027) == "org/holidays.yaml"
    assert wd(1, "2027-09-24T09:00", calendar) == "2027-09-26T09:00+08:00"
    assert wd(1, "2027-09-30T09:00", calendar) == "2027-10-08T09:00+08:00"
    assert calendar.holiday_name(dt.date(2027, 10, 3)) == "国庆节"
    assert calendar.warnings(dt.date(2026, 12, 3)) == []


def test_the_file_alone_when_the_package_is_switched_off(tmp_path: Path):
    calendar = load_definitions(definitions_with(tmp_path, "use_package: false\nholidays: [{date: 2025-10-01}]\n")).calendar
    assert not calendar.is_workday(dt.date(2025, 10, 1))
    assert calendar.is_workday(dt.date(2025, 10, 2))  # a holiday for the package, not for this file
    assert not calendar.is_workday(dt.date(2025, 9, 28))  # nor the package's make-up Sunday


def test_a_year_nobody_knows_counts_monday_to_friday_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    calendar = load_definitions(definitions_with(tmp_path, None)).calendar
    assert calendar.unknown_years([2026, 2027]) == [2027]
    (warning,) = calendar.warnings(dt.date(2026, 12, 3))  # a deadline set today may run into 2027
    assert "working days in 2027 count Monday to Friday only" in warning and "org/holidays.yaml" in warning
    assert calendar.warnings(dt.date(2026, 6, 1)) == []
    with caplog.at_level(logging.WARNING, logger="engine.workdays"):
        assert wd(5, "2027-03-05T09:00", calendar) == "2027-03-12T09:00+08:00"
        wd(5, "2027-04-05T09:00", calendar)
    said = [r.getMessage() for r in caplog.records if r.name == "engine.workdays"]
    assert len(said) == 1 and "2027" in said[0]  # once per year, not once per day counted


def test_lint_warns_about_a_year_nobody_knows_but_passes(tmp_path: Path):
    root = definitions_with(tmp_path, None)
    result = civicflow("lint", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    # the clock is real here: a warning is due whenever the next two months reach a year chinese-calendar lacks
    today = dt.date.today()
    unknown = DEFAULT.unknown_years({today.year, (today + dt.timedelta(days=62)).year})
    assert ("warning: working days in" in result.stdout) == bool(unknown)
    assert result.stdout.strip().endswith(": ok")


@pytest.mark.parametrize("text, where, message", [
    ("holidays:\n  - {date: 2027-1-1}\n", "2:12: holidays[0].date", '"2027-1-1" does not match ^\\d{4}-\\d{2}-\\d{2}$ (a day as 2027-10-01)'),
    ("holidays:\n  - {date: 2027-02-30}\n", "2:12: <document>", "YAML error: not a date: day is out of range for month"),
    ("holidays:\n  - {date: '2027-02-30'}\n", "2:5: holidays[0]", "not a date: day is out of range for month"),
    ("holidays:\n  - {from: 2027-10-07, to: 2027-10-01}\n", "2:28: holidays[0].to", "'to' (2027-10-01) is before 'from' (2027-10-07)"),
    ("holidays:\n  - {date: 2027-10-01}\nworkdays:\n  - {date: 2027-10-01}\n", "4:5: workdays[0]",
     "2027-10-01 is listed twice (also holidays[0])"),
    ("holidays:\n  - {date: 2027-10-01, to: 2027-10-03}\n", "2:5: holidays[0]", "give either 'date' (one day) or 'from' and 'to'"),
    ("holiday:\n  - {date: 2027-10-01}\n", "1:1: holiday", "unknown key 'holiday'"),
    ("workdays:\n  - {date: 2027-09-27}\n", "2:5: workdays[0]", "2027-09-27 (Monday) is a working day already"),
    ("holidays:\n  - {date: 2026-10-03}\n", "2:5: holidays[0]", "2026-10-03 (Saturday) is a day off already"),
])
def test_mistakes_in_the_holiday_file_name_file_and_line(tmp_path: Path, text: str, where: str, message: str):
    with pytest.raises(DefinitionError) as info:
        load_definitions(definitions_with(tmp_path, text))
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1 and problems[0].startswith(f"org/holidays.yaml:{where}: {message}"), problems


# --------------------------------------------------------------------------- through the engine and the pages

USERS = [("resident", "王芳", ["resident"], "renjia-g1"), ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
         ("staff", "陈静", ["community_staff"], "renjia")]
REPORT = {"category": "hazard", "description": "1号楼2单元楼道堆放旧家具，堵塞消防通道", "address": "1号楼2单元楼道",
          "grid": "renjia-g1", "reporter_type": "resident", "reporter_phone": "13812345678"}


def people(app: Any) -> Any:
    """``as_("grid")``: a browser logged in on ``app`` as that user (one per user)."""
    sessions: dict[str, Browser] = {}

    def as_(name: str) -> Browser:
        if name not in sessions:
            sessions[name] = Browser(app).login(name)
        return sessions[name]
    return as_


@pytest.fixture(params=STORES)
def holiday_app(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    clock = FrozenClock("2025-09-30T09:00:00")  # Tuesday before the 2025 National Day week
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "UPLOADS": str(tmp_path / "up"), "CLOCK": clock,
                      "STORE": store_location(request.param, request, tmp_path, "cf.json"),
                      "DEFINITIONS": str(definitions_with(tmp_path, HOLIDAYS))})
    add_users(app.extensions["civicflow"].store, USERS)
    yield app, clock
    app.extensions["civicflow"].store.close()


def test_a_deadline_over_national_day_falls_after_the_holiday(holiday_app: Any):
    """problem_report: a report waits 1 working day for the grid worker; made on 30 Sep it is due on 9 Oct."""
    app, clock = holiday_app
    as_ = people(app)
    cid = started(as_("resident").post("/start/problem_report", REPORT))
    (timer,) = [t for t in case(app, cid)["timers"] if t["kind"] == "deadline"]
    assert timer["due"] == "2025-10-09T09:00:00+08:00"
    assert "2025-10-09 09:00" in as_("grid").get(f"/cases/{cid}").get_data(as_text=True)
    clock.advance(days=8, hours=23)  # 9 Oct, 08:00: the first working day after the holiday, not yet due
    app.extensions["civicflow"].tick()
    assert case(app, cid)["overdue"] is False
    clock.advance(hours=1, minutes=1)
    app.extensions["civicflow"].tick()
    doc = case(app, cid)
    assert doc["overdue"] is True and doc["escalated_to"] == ["staff"]


def test_a_notice_end_on_the_public_page_follows_the_holiday_file(tmp_path: Path):
    """annual_appraisal's 5-working-day notice, started on Friday 27 Nov 2026: the file's day off on 1 Dec moves
    its end from 4 to 7 December, on the public list and the case's public page, and the clock keeps to it."""
    from tests.test_process_appraisal import USERS as APPRAISAL_USERS, to_notice

    clock = FrozenClock("2026-11-27T09:00:00")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "UPLOADS": str(tmp_path / "up"), "CLOCK": clock,
                      "STORE": str(tmp_path / "cf.json"), "DEFINITIONS": str(definitions_with(tmp_path, HOLIDAYS))})
    add_users(app.extensions["civicflow"].store, APPRAISAL_USERS)
    try:
        cid = to_notice(app, people(app))
        listing = Browser(app).get("/public").get_data(as_text=True)
        assert "2026-12-07" in listing and "2026-12-04" not in listing
        assert "2026-12-07" in Browser(app).get(f"/public/{cid}").get_data(as_text=True)
        clock.advance(days=7)  # 4 December: the package alone would have ended the notice
        app.extensions["civicflow"].tick()
        assert case(app, cid)["state"] == "on_notice"
        clock.advance(days=3, minutes=1)
        app.extensions["civicflow"].tick()
        assert case(app, cid)["state"] == "result"
    finally:
        app.extensions["civicflow"].store.close()
