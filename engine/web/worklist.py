"""The inbox page as a work queue (filters, sorts, search, counts, pages, due dates), bulk steps taken from it,
and notifications that lead to their case and mark themselves read. The queries are :mod:`engine.inbox`'s."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..cases import Case
from ..errors import NotFound, StaleVersion, SubmissionError, TransitionError
from ..inbox import SORTS, InboxQuery, due_of
from ..notify import NOTIFICATIONS
from ..readmodel import CASE_INDEX, PAGE_SIZE
from ..spec import TransitionSpec
from . import get_engine
from .auth import login_required
from .i18n import current_lang, tr

bp = Blueprint("inbox", __name__)

MINE_ON_INBOX = 5
#: How many cases one bulk submission may carry (a page holds PAGE_SIZE; this bounds a hand-made post).
BULK_LIMIT = 100


@dataclass(frozen=True)
class Card:
    """What a card on the inbox shows beside the case: its deadline, whether it is overdue, how long it waits,
    and the bulk steps the person may take on it."""

    case: Case
    due: str
    overdue: bool
    waiting: str
    bulk: tuple[TransitionSpec, ...]
    acting_for: tuple[str, ...] = ()  # 代: the names of those who delegated this task to the person

    @property
    def key(self) -> tuple[Any, ...]:
        """Everything the card's HTML depends on beside the language and the definitions (engine.web.fragments)."""
        return (self.case.id, self.case.version, self.due, self.overdue, self.waiting, tuple(t.id for t in self.bulk),
                self.acting_for)


def waited(since: str, now: dt.datetime) -> str:
    """How long a case has waited since ``since`` (ISO time), in words."""
    try:
        start = dt.datetime.fromisoformat(since)
    except ValueError:
        return ""
    if start.tzinfo is None:
        start = start.replace(tzinfo=now.tzinfo)
    hours = int((now - start).total_seconds() // 3600)
    if hours >= 48:
        return _waited_words(current_lang(), "days", hours // 24)
    if hours >= 1:
        return _waited_words(current_lang(), "hours", hours)
    return _waited_words(current_lang(), "", 0)


@functools.lru_cache(maxsize=4096)
def _waited_words(lang: str, unit: str, n: int) -> str:
    """The words for ``n`` days or hours in ``lang`` (the page's language, which gettext also uses): kept, as
    a page of 20 cards asks for a dozen of the same few phrases."""
    if unit == "days":
        return _("Waiting %(n)s days", n=n)
    if unit == "hours":
        return _("Waiting %(n)s hours", n=n)
    return _("Waiting less than an hour")


def shown_time(stamp: str) -> str:
    return stamp[:16].replace("T", " ")


def inbox_page() -> Any:
    engine = get_engine()
    query = InboxQuery.from_args(request.args, engine.read)
    found = engine.read.work.page(g.user, query, PAGE_SIZE)
    now = engine.clock()
    stamp = now.isoformat(timespec="seconds")
    cards = []
    for case in found.cases:
        due = due_of({"timers": case.timers, "state": case.state})
        # the available steps are worked out again only where the state has a bulk step at all (few do)
        bulk = (tuple(t for t in engine.available_transitions(case, g.user) if t.bulk)
                if any(t.bulk for t in engine.state_of(case).transitions) else ())
        cards.append(Card(case, shown_time(due) if due else "", case.overdue or bool(due and _before(due, now)),
                          waited(case.entered_at, now), bulk, found.acting_for.get(case.id, ())))  # 代: for whom
    actions: dict[tuple[str, str], int] = {}
    for card in cards:
        for t in card.bulk:
            actions[(t.id, tr(t.label))] = actions.get((t.id, tr(t.label)), 0) + 1
    definitions = engine.definitions
    processes = [(wf, found.counts[wf.id]) for wf in definitions.workflows.values() if wf.id in found.counts]
    wf = definitions.workflows.get(query.process) if query.process else None
    states = [(sid, _state_title(wf, sid), n) for sid, n in found.state_counts.items()] if wf else []
    mine = engine.read.started_by(g.user, size=MINE_ON_INBOX) if query.page == 1 and not _filtered(query) else None
    copied = engine.store.count_keys(CASE_INDEX, [("cc", g.user.username)])  # the 抄送我的 tab's count
    # what the title, search and filters above the cards show besides the language (engine.web.fragments)
    top_key = (query.q, query.sort, query.process, query.state, found.total,
               tuple((wf.id, n) for wf, n in processes), tuple((sid, n) for sid, _, n in states))
    return render_template("inbox.html", copied=copied, cards=cards, cases=found.cases, query=query, processes=processes, top_key=top_key,
                           total=found.total, workflow=wf, states=states, sorts=SORTS, filtered=_filtered(query),
                           bulk_actions=sorted(actions.items()), mine=mine, now=stamp)


def _before(due: str, now: dt.datetime) -> bool:
    try:
        return dt.datetime.fromisoformat(due) <= now
    except ValueError:
        return False


def _filtered(query: InboxQuery) -> bool:
    return bool(query.process or query.state or query.q)


def _state_title(wf: Any, sid: str) -> Any:
    engine = get_engine()
    for spec in engine.kept.specs(wf.id) or [wf]:
        if sid in spec.states:
            return spec.states[sid].title
    return {"zh": sid}


def _back() -> str:
    """Where a bulk post returns: the inbox page it came from, with its filters (only a path on this site)."""
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("cases.inbox")
    return target


@bp.route("/inbox/bulk", methods=["POST"])
@login_required
def bulk() -> Any:
    """One step for every checked case, each on its own through the one transition path (role, scope and guard
    checked per case, its own history entry and version check); what is refused is named, the rest goes ahead."""
    engine = get_engine()
    transition_id = request.form.get("transition", "")
    ids: list[int] = []
    for raw in request.form.getlist("case")[:BULK_LIMIT]:
        if raw.isdigit() and int(raw) not in ids:
            ids.append(int(raw))
    if not ids or not transition_id:
        flash(_("Tick at least one case first."), "error")
        return redirect(_back())
    done: list[int] = []
    refused: list[str] = []
    label = ""
    for case_id in ids:
        try:
            case = engine.get(case_id, g.user)
            t = engine.state_of(case).transition(transition_id)
            if t is None or not t.bulk or t not in engine.available_transitions(case, g.user):
                raise _Refused(_("you may not take this step on it now"))
            form = engine.definitions.form_of(engine.workflow_of(case), t.form) if t.form else None
            values = {f.id: case.data[f.id] for f in form.fields if f.id in case.data} if form else {}
            version = request.form.get(f"version-{case_id}", type=int)
            engine.fire(case_id, transition_id, g.user, values, comment=request.form.get("comment", ""),
                        expected_version=version)
            label = label or tr(t.label)
            done.append(case_id)
        except _Refused as exc:
            refused.append(_("#%(id)s: %(why)s", id=case_id, why=exc.why))
        except NotFound:
            refused.append(_("#%(id)s: %(why)s", id=case_id, why=_("not found")))
        except StaleVersion:
            refused.append(_("#%(id)s: %(why)s", id=case_id, why=_("changed by someone else since the page was loaded")))
        except TransitionError as exc:  # not allowed for this person, a guard, no longer in that state
            refused.append(_("#%(id)s: %(why)s", id=case_id, why=tr(exc.message)))
        except SubmissionError:  # a bulk step has no required field; a value the case holds no longer fits
            refused.append(_("#%(id)s: %(why)s", id=case_id, why=_("open the case and take the step there")))
    if done:
        flash(_("%(label)s: done for %(n)s cases (%(ids)s).", label=label, n=len(done),
                ids=", ".join(f"#{i}" for i in done)))
    if refused:
        flash(_("Not done: %(list)s", list="; ".join(refused)), "error")
    return redirect(_back())


class _Refused(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@bp.route("/notifications/<int:note_id>")
@login_required
def follow(note_id: int) -> Any:
    """A notification's link: marks it read, then opens its case (or says the case is out of reach now)."""
    engine = get_engine()
    doc = engine.store.get(NOTIFICATIONS, note_id)
    if doc is None or doc.get("to") != g.user.username:
        abort(404)
    if not doc.get("read"):
        with engine.store.transaction() as tx:
            current = tx.get(NOTIFICATIONS, note_id)
            if current is not None and not current.get("read"):
                current["read"] = True
                tx.replace(NOTIFICATIONS, note_id, current)
    try:
        engine.get(int(doc.get("case") or 0), g.user)
    except (NotFound, TypeError, ValueError):
        flash(_("Case #%(id)s is no longer open to you.", id=doc.get("case")))
        return redirect(url_for("cases.notifications"))
    return redirect(url_for("cases.show", case_id=doc["case"]))
