"""Case lists as CSV and XLSX: the rows of the list page (same scope, same state filter), one column per
start-form field, sensitive values masked for those who may not see them, safe to open in a spreadsheet.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable, Iterator, Sequence

from flask import Blueprint, Response, abort, g, send_file, stream_with_context
from flask_babel import gettext as _

from ..cases import Case
from ..spec import FieldSpec, OrgTree, WorkflowSpec
from . import get_engine
from .auth import login_required
from .cases import listed_cases
from .i18n import current_lang, tr

bp = Blueprint("export", __name__)

#: A cell starting with one of these is read as a formula by Excel, LibreOffice or Google Sheets
#: (CSV injection, OWASP); the full-width forms are what a Chinese keyboard types.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # characters XML 1.0 (so XLSX) cannot hold



def neutralise(text: str) -> str:
    """Prefix a would-be formula with ``'`` so a spreadsheet shows it as text."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _cell(f: FieldSpec, value: Any, lang: str, org: OrgTree, masked: bool) -> Any:
    if value is None or value == "" or value == []:
        return ""
    if masked and f.sensitive:
        return neutralise(f.kind.masked(f, value, lang, org))
    cell = f.kind.export(f, value, lang, org, masked)  # numbers stay numbers, so that they sum
    return neutralise(cell) if isinstance(cell, str) else cell


def table(wf: WorkflowSpec, cases: Sequence[Case]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for ``cases`` as the current user may see them."""
    header, rows = table_rows(wf, cases)
    return header, list(rows)


def table_rows(wf: WorkflowSpec, cases: Iterable[Case]) -> tuple[list[str], Iterator[list[Any]]]:
    """Header and rows, made one by one as they are written out."""
    engine = get_engine()
    lang = current_lang()
    org = engine.definitions.org
    fields = [f for f in engine.definitions.forms[wf.start_form].fields if f.kind.holds_value]  # a note is no column
    header = [_("Case number")] + [tr(f.label, lang) for f in fields] + [
        _("State"), _("Org unit"), _("Created"), _("Updated")]

    def rows() -> Iterator[list[Any]]:
        for case in cases:
            masked = not engine.may_see_sensitive(case, g.user)
            state = wf.states.get(case.state)
            yield ([case.id]
                   + [_cell(f, case.data.get(f.id), lang, org, masked) for f in fields]
                   + [neutralise(tr(state.title, lang) if state else case.state),
                      neutralise(org.path_name(case.org_unit, lang) if case.org_unit in org.units else case.org_unit),
                      case.created_at[:16].replace("T", " "), case.updated_at[:16].replace("T", " ")])
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


def to_xlsx(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """A sheet with a bold, frozen header row, a filter, and columns as wide as their text. Written in
    openpyxl's write-only mode: cells are streamed to the file instead of kept as objects (several times
    faster and a fraction of the memory for a large list)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    sheet = book.create_sheet(re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet1")
    texts = [[_XLSX_ILLEGAL.sub("", neutralise(v)) if isinstance(v, str) else v for v in row] for row in rows]
    widths = [len(h) for h in header]
    for row in texts:
        for c, value in enumerate(row):
            width = max(len(line) for line in value.split("\n")) if isinstance(value, str) else len(str(value))
            if width > widths[c]:
                widths[c] = width
    for c in range(len(header)):
        sheet.column_dimensions[get_column_letter(c + 1)].width = min(60, max(8, widths[c] * 1.6 + 2))
    sheet.freeze_panes = "A2"
    bold, wrap = Font(bold=True), Alignment(wrap_text=True, vertical="top")

    def cell(value: Any, font: Font | None = None) -> Any:
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
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@bp.route("/workflows/<workflow_id>/export.<fmt>")
@login_required
def export(workflow_id: str, fmt: str) -> Any:
    if fmt not in ("csv", "xlsx"):
        abort(404)
    wf, state, shown, _counts = listed_cases(workflow_id, size=None)
    stamp = get_engine().clock().strftime("%Y%m%d-%H%M")
    name = f"{wf.id}{'-' + state if state else ''}-{stamp}.{fmt}"
    if fmt == "csv":
        header, rows = table_rows(wf, shown.items)
        response = Response(stream_with_context(csv_chunks(header, rows)), mimetype="text/csv; charset=utf-8")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'  # ids and a stamp: ASCII
    else:
        header, listed = table(wf, shown.items)
        data = to_xlsx(tr(wf.title), header, listed)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=name, max_age=0)
    response.headers["Cache-Control"] = "no-store"  # personal data: not for shared caches or the back button
    return response
