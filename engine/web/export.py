"""Case lists as CSV and XLSX: the rows of the list page (same scope, same state filter), one column per
start-form field, sensitive values masked for those who may not see them, safe to open in a spreadsheet.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable, Sequence

from flask import Blueprint, abort, g, send_file
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
    engine = get_engine()
    lang = current_lang()
    org = engine.definitions.org
    fields = list(engine.definitions.forms[wf.start_form].fields)
    header = [_("Case number")] + [tr(f.label, lang) for f in fields] + [
        _("State"), _("Org unit"), _("Created"), _("Updated")]
    rows = []
    for case in cases:
        masked = not engine.may_see_sensitive(case, g.user)
        state = wf.states.get(case.state)
        rows.append([case.id]
                    + [_cell(f, case.data.get(f.id), lang, org, masked) for f in fields]
                    + [neutralise(tr(state.title, lang) if state else case.state),
                       neutralise(org.path_name(case.org_unit, lang) if case.org_unit in org.units else case.org_unit),
                       case.created_at[:16].replace("T", " "), case.updated_at[:16].replace("T", " ")])
    return header, rows


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """UTF-8 with a byte order mark, so Excel opens Chinese text correctly; CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise(h) for h in header])
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def to_xlsx(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = re.sub(r"[\[\]:*?/\\]", " ", title)[:31] or "Sheet1"
    widths = [len(h) for h in header]
    for r, values in enumerate([list(header), *rows], start=1):
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(row=r, column=c)
            if isinstance(value, str):
                value = _XLSX_ILLEGAL.sub("", neutralise(value))
                cell.value = value
                cell.data_type = "s"  # openpyxl would store a string starting with "=" as a formula
                if "\n" in value:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
                widths[c - 1] = max(widths[c - 1], *(len(line) for line in value.split("\n")))
            else:
                cell.value = value
                widths[c - 1] = max(widths[c - 1], len(str(value)))
    for c in range(1, len(header) + 1):
        sheet.cell(row=1, column=c).font = Font(bold=True)
        sheet.column_dimensions[get_column_letter(c)].width = min(60, max(8, widths[c - 1] * 1.6 + 2))
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@bp.route("/workflows/<workflow_id>/export.<fmt>")
@login_required
def export(workflow_id: str, fmt: str) -> Any:
    if fmt not in ("csv", "xlsx"):
        abort(404)
    wf, state, shown, _counts = listed_cases(workflow_id, size=None)
    header, rows = table(wf, shown.items)
    stamp = get_engine().clock().strftime("%Y%m%d-%H%M")
    name = f"{wf.id}{'-' + state if state else ''}-{stamp}.{fmt}"
    if fmt == "csv":
        data, mimetype = to_csv(header, rows), "text/csv; charset=utf-8"
    else:
        data = to_xlsx(tr(wf.title), header, rows)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=name, max_age=0)
    response.headers["Cache-Control"] = "no-store"  # personal data: not for shared caches or the back button
    return response
