"""Case lists as CSV and XLSX: the rows of the list page (same scope, same state filter), one column per
start-form field and per field of the steps' forms (scores, dispatch, results), sensitive values masked for
those who may not see them, safe to open in a spreadsheet: ID and phone numbers stay text, dates are date
cells in XLSX. Options in the query string: ``headers=ids`` (field ids instead of labels), ``steps=0`` (the
start form only), ``history=1`` (XLSX: the history as a second sheet; CSV: the history instead of the cases).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any, Iterable, Iterator, Sequence

from flask import Blueprint, Response, abort, current_app, g, request, send_file, stream_with_context
from flask_babel import gettext as _

from ..cases import CASES, Case
from ..spec import FieldSpec, OrgTree, WorkflowSpec
from . import get_engine
from .auth import login_required
from .cases import listed_cases
from .fragments import FragmentCache
from .i18n import current_lang, tr

bp = Blueprint("export", __name__)

#: A cell starting with one of these is read as a formula by Excel, LibreOffice or Google Sheets
#: (CSV injection, OWASP); the full-width forms are what a Chinese keyboard types.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # characters XML 1.0 (so XLSX) cannot hold
#: Text a spreadsheet opening a CSV would turn into a number: an 18-digit ID number becomes 1.1E+17, a phone
#: number or a postcode loses its leading zero.
_LOOKS_NUMERIC = re.compile(r"^[+-]?(\d+[.,]?\d*|[.,]\d+)([eE][+-]?\d+)?%?$")



def neutralise(text: str) -> str:
    """Prefix a would-be formula with ``'`` so a spreadsheet shows it as text."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _cell(f: FieldSpec, value: Any, lang: str, org: OrgTree, masked: bool, people: Any = None) -> Any:
    if value is None or value == "" or value == []:
        return ""
    if masked and f.sensitive:
        return neutralise(f.kind.masked(f, value, lang, org, people))
    cell = f.kind.export(f, value, lang, org, masked, people)  # numbers stay numbers, so that they sum
    return neutralise(cell) if isinstance(cell, str) else cell


def columns(wf: WorkflowSpec, steps: bool = True) -> list[tuple[FieldSpec, str]]:
    """The fields an export has a column for, each with the form it comes from: the start form's, then the
    fields of each step's form not seen before (a field the steps share is one column)."""
    definitions = get_engine().definitions
    found: list[tuple[FieldSpec, str]] = []
    seen: set[str] = set()
    forms = [wf.start_form] + ([t.form for t in wf.transitions() if t.form] if steps else [])
    for form_id in dict.fromkeys(forms):
        form = definitions.form_of(wf, form_id)
        for f in form.fields:
            if f.kind.holds_value and f.id not in seen:  # a note is no column
                seen.add(f.id)
                found.append((f, form_id))
    return found


def table(wf: WorkflowSpec, cases: Sequence[Case], *, ids: bool = False, steps: bool = True,
          typed: bool = False) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for ``cases`` as the current user may see them."""
    header, rows = table_rows(wf, cases, ids=ids, steps=steps, typed=typed)
    return header, list(rows)


def table_rows(wf: WorkflowSpec, cases: Iterable[Case], *, ids: bool = False, steps: bool = True,
               typed: bool = False) -> tuple[list[str], Iterator[list[Any]]]:
    """Header and rows, made one by one as they are written out. ``typed``: dates as ``datetime`` values (an
    XLSX date cell); else as text, and text that a spreadsheet would read as a number marked to stay text."""
    engine = get_engine()
    lang = current_lang()
    org = engine.definitions.org
    people = engine.people()  # user fields: display names, each looked up once for the whole file
    fields = [f for f, _form in columns(wf, steps)]
    if ids:
        header = ["id"] + [f.id for f in fields] + ["state", "org_unit", "created_at", "updated_at"]
    else:
        header = [_("Case number")] + [tr(f.label, lang) for f in fields] + [
            _("State"), _("Org unit"), _("Created"), _("Updated")]

    def cell(f: FieldSpec, value: Any, masked: bool) -> Any:
        if typed and f.kind.date_like and not (masked and f.sensitive):
            moment = _moment(value)
            if moment is not None:
                return moment
        out = _cell(f, value, lang, org, masked, people)
        return out if typed else keep_text(out)

    def row(case: Case, masked: bool) -> tuple[Any, ...]:
        state = wf.states.get(case.state)
        return tuple([case.id]
                     + [cell(f, case.data.get(f.id), masked) for f in fields]
                     + [neutralise(tr(state.title, lang) if state else case.state),
                        neutralise(org.path_name(case.org_unit, lang) if case.org_unit in org.units else case.org_unit),
                        _stamp(case.created_at, typed), _stamp(case.updated_at, typed)])

    # A case's row is the same for the same version, language, columns and masking: kept (engine.web.fragments)
    kept, shape = _kept_rows(), (lang, typed, wf.id, tuple(f.id for f in fields))

    def rows() -> Iterator[list[Any]]:
        for case in cases:
            masked = not engine.may_see_sensitive(case, g.user)
            yield list(kept(shape, case.id, case.version, masked, caller=lambda c=case, m=masked: row(c, m)))
    return header, rows()


ROWS_KEPT = 5000  # export rows kept (a few pages' worth: a download of every case goes past them)


def _kept_rows() -> FragmentCache:
    cache = current_app.extensions.get("civicflow.export_rows")
    if cache is None:
        cache = current_app.extensions["civicflow.export_rows"] = FragmentCache(ROWS_KEPT)
    return cache


def keep_text(value: Any) -> Any:
    """A text a spreadsheet would read as a number (``110105198506150012``, ``0571...``) with a tab in front,
    which Excel and LibreOffice both take as a text cell; numbers of number fields stay numbers."""
    if isinstance(value, str) and _LOOKS_NUMERIC.match(value):
        return "\t" + value
    return value


def _moment(value: Any) -> dt.date | dt.datetime | None:
    """An ISO date or date-time text as the value of a date cell (local time, no zone: what a sheet shows)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=None, second=0, microsecond=0)


def _stamp(iso_text: str, typed: bool) -> Any:
    if typed:
        moment = _moment(iso_text)
        if moment is not None:
            return moment
    return iso_text[:16].replace("T", " ")


def history_rows(wf: WorkflowSpec, cases: Iterable[Case], *, ids: bool = False,
                 typed: bool = False) -> tuple[list[str], Iterator[list[Any]]]:
    """Every history entry of ``cases``, one row each: when, who, what, from which state to which, the comment.
    Changes are not repeated here (the case columns hold the values; sensitive ones are masked there)."""
    lang = current_lang()
    header = (["case", "at", "by", "action", "from", "to", "comment"] if ids else
              [_("Case number"), _("When"), _("Done by"), _("Action"), _("From"), _("To"), _("Comment")])

    def state(sid: str | None) -> str:
        found = wf.states.get(sid or "")
        return tr(found.title, lang) if found else (sid or "")

    store = get_engine().store

    def rows() -> Iterator[list[Any]]:
        for listed in cases:
            # a list row is read without its history (most of a case's bytes): read each case whole, one by one
            doc = store.get(CASES, listed.id) if listed.summary else None
            case = Case.from_doc(doc, owned=True) if doc is not None else listed
            for entry in case.history:
                by = entry.get("by_name") or entry.get("by") or ""
                if entry.get("on_behalf_of_name"):  # done by a delegate (engine.delegation)
                    by = f"{by}（代 {entry['on_behalf_of_name']}）" if lang == "zh" else f"{by} (for {entry['on_behalf_of_name']})"
                yield [case.id, _stamp(entry.get("at") or "", typed), neutralise(by),
                       neutralise(tr(entry.get("label"), lang) or entry.get("action") or ""),
                       neutralise(state(entry.get("from"))), neutralise(state(entry.get("to"))),
                       neutralise(entry.get("comment") or "")]
    return header, rows()


CSV_CHUNK = 500  # rows per piece of a streamed CSV


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """UTF-8 with a byte order mark, so Excel opens Chinese text correctly; CRLF line ends. In pieces of
    ``CSV_CHUNK`` rows, so a download of 100,000 cases starts at once and is never held whole in memory."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("\ufeff")
    writer.writerow([neutralise(h) for h in header])
    for n, row in enumerate(rows, start=1):
        writer.writerow(row)
        if n % CSV_CHUNK == 0:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


Sheet = tuple[str, Sequence[str], Sequence[Sequence[Any]]]


def to_xlsx(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], more: Sequence[Sheet] = ()) -> bytes:
    """A workbook: the sheet ``title`` and any ``more``, each with a bold, frozen header row, a filter, columns
    as wide as their text, and dates as date cells. Written in openpyxl's write-only mode: cells are streamed
    to the file instead of kept as objects (several times faster and a fraction of the memory)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for name, head, body in ((title, header, rows), *more):
        _sheet(book, name, head, body)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet(book: Any, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    sheet = book.create_sheet(re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet1")
    texts = [[_XLSX_ILLEGAL.sub("", neutralise(v)) if isinstance(v, str) else v for v in row] for row in rows]
    widths = [len(h) for h in header]
    for row in texts:
        for c, value in enumerate(row):
            if isinstance(value, str):
                width = max(len(line) for line in value.split("\n"))
            else:
                width = 16 if isinstance(value, dt.datetime) else 10 if isinstance(value, dt.date) else len(str(value))
            if width > widths[c]:
                widths[c] = width
    for c in range(len(header)):
        sheet.column_dimensions[get_column_letter(c + 1)].width = min(60, max(8, widths[c] * 1.6 + 2))
    sheet.freeze_panes = "A2"
    bold, wrap = Font(bold=True), Alignment(wrap_text=True, vertical="top")

    def cell(value: Any, font: Font | None = None) -> Any:
        if isinstance(value, (dt.date, dt.datetime)):
            out = WriteOnlyCell(sheet, value=value)
            out.number_format = "yyyy-mm-dd hh:mm" if isinstance(value, dt.datetime) else "yyyy-mm-dd"
            return out
        if not isinstance(value, str):
            return value
        out = WriteOnlyCell(sheet, value=value)
        out.data_type = "s"  # openpyxl would store a string starting with "=" as a formula
        if font is not None:
            out.font = font
        if "\n" in value:
            out.alignment = wrap
        return out

    sheet.append([cell(_XLSX_ILLEGAL.sub("", neutralise(h)), bold) for h in header])
    for row in texts:
        sheet.append([cell(v) for v in row])
    sheet.auto_filter.ref = f"A1:{get_column_letter(max(1, len(header)))}{len(texts) + 1}"


@bp.route("/workflows/<workflow_id>/export.<fmt>")
@login_required
def export(workflow_id: str, fmt: str) -> Any:
    if fmt not in ("csv", "xlsx"):
        abort(404)
    wf, state, shown, _counts = listed_cases(workflow_id, size=None)
    ids, steps = request.args.get("headers") == "ids", request.args.get("steps") != "0"
    history = request.args.get("history") == "1"
    stamp = get_engine().clock().strftime("%Y%m%d-%H%M")
    name = f"{wf.id}{'-' + state if state else ''}{'-history' if history and fmt == 'csv' else ''}-{stamp}.{fmt}"
    if fmt == "csv":
        header, rows = (history_rows(wf, shown.items, ids=ids) if history else
                        table_rows(wf, shown.items, ids=ids, steps=steps))
        response = Response(stream_with_context(csv_chunks(header, rows)))
        response.headers["Content-Type"] = "text/csv; charset=utf-8"  # one charset, not Flask's added second one
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'  # ids and a stamp: ASCII
    else:
        header, listed = table(wf, shown.items, ids=ids, steps=steps, typed=True)
        more: list[Sheet] = []
        if history:
            head, entries = history_rows(wf, shown.items, ids=ids, typed=True)
            more.append((_("History"), head, list(entries)))
        data = to_xlsx(tr(wf.title), header, listed, more)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=name, max_age=0)
    response.headers["Cache-Control"] = "no-store"  # personal data: not for shared caches or the back button
    return response
