"""Bulk import of users from a CSV or XLSX file: read the rows, check every one, then add all or none.

Policy: all or nothing. A file with one bad row imports no one (in one store transaction when it is good),
so an admin fixes the file and uploads it again instead of working out which half went in. Every bad row is
reported with its row number (as a spreadsheet numbers it: the header is row 1) and each reason.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .admin import Msg, UserInput, UserAdmin, generate_password, msg, split_roles
from .errors import EngineError
from .users import USERS, User, hash_password

if TYPE_CHECKING:
    from .runtime import Engine

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 2000
#: Column names accepted in the header row (English or Chinese), each meaning one of the five columns.
COLUMNS = {
    "username": "username", "用户名": "username", "账号": "username",
    "name": "name", "姓名": "name", "名称": "name",
    "roles": "roles", "role": "roles", "角色": "roles",
    "unit": "unit", "org_unit": "unit", "单位": "unit", "所属单位": "unit", "组织": "unit",
    "password": "password", "密码": "password",
}
REQUIRED = ("username", "name", "roles", "unit")


class ImportFileError(EngineError):
    """The file as a whole cannot be read (wrong type, too large, no header...)."""

    def __init__(self, message: Msg):
        self.message = message
        super().__init__(message["en"])


@dataclass
class RowProblem:
    row: int
    username: str
    messages: list[Msg]


@dataclass
class ImportResult:
    """What happened: ``imported`` (username, name, generated password or "") or the bad rows (nothing imported)."""

    rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    imported: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.imported)


def read_table(filename: str, data: bytes) -> list[list[str]]:
    """The cells of the first sheet (XLSX) or of the CSV file, as text."""
    if len(data) > MAX_BYTES:
        raise ImportFileError(msg(f"文件过大（最多 {MAX_BYTES // 1024 // 1024} MB）。",
                                  f"The file is too large (at most {MAX_BYTES // 1024 // 1024} MB)."))
    name = filename.lower()
    if name.endswith(".xlsx"):
        return _read_xlsx(data)
    if name.endswith(".csv"):
        return _read_csv(data)
    raise ImportFileError(msg("请上传 .xlsx 或 .csv 文件。", "Upload an .xlsx or .csv file."))


def _read_csv(data: bytes) -> list[list[str]]:
    # Excel in Chinese saves "CSV" in GB18030 (GBK); everything else sends UTF-8, often with a BOM.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ImportFileError(msg("无法识别文件编码，请另存为 UTF-8 CSV。", "Unreadable text encoding: save the file as UTF-8 CSV."))
    try:
        return [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise ImportFileError(msg(f"CSV 格式错误：{exc}", f"Malformed CSV: {exc}")) from exc


def _read_xlsx(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook  # only needed here; keeps importing the engine quick

    if not data.startswith(b"PK"):
        raise ImportFileError(msg("这不是一个 Excel（.xlsx）文件。", "This is not an Excel (.xlsx) file."))
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ImportFileError(msg("无法读取该 Excel 文件。", "This Excel file cannot be read.")) from exc
    try:
        sheet = book.worksheets[0]
        rows = []
        for row in sheet.iter_rows(values_only=True):
            rows.append(["" if v is None else str(int(v) if isinstance(v, float) and v.is_integer() else v).strip()
                         for v in row])
            if len(rows) > MAX_ROWS + 1:
                break
        return rows
    finally:
        book.close()


def parse(table: list[list[str]]) -> list[tuple[int, dict[str, str]]]:
    """``(row number, {column: text})`` per non-empty row below the header."""
    if not table or not any(table[0]):
        raise ImportFileError(msg("文件是空的，第一行应为表头：username, name, roles, unit, password。",
                                  "The file is empty; its first row must be the header: username, name, roles, unit, password."))
    header = [COLUMNS.get(c.strip().lower(), "") for c in table[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError(msg(f"表头缺少列：{', '.join(missing)}。", f"The header lacks the column(s): {', '.join(missing)}."))
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        if not any(cells):
            continue
        row = {col: (cells[i] if i < len(cells) else "") for i, col in enumerate(header) if col}
        rows.append((number, row))
    if len(rows) > MAX_ROWS:
        raise ImportFileError(msg(f"一次最多导入 {MAX_ROWS} 行。", f"At most {MAX_ROWS} rows at a time."))
    if not rows:
        raise ImportFileError(msg("文件里除表头外没有数据。", "The file has no rows below the header."))
    return rows


def _unit_id(engine: "Engine", text: str) -> str:
    """A unit by its id, or by its Chinese or English name when only one unit carries it."""
    org = engine.definitions.org
    if text in org.units:
        return text
    named = [u.id for u in org.units.values() if text in (u.name or {}).values()]
    return named[0] if len(named) == 1 else text


def import_users(admin: UserAdmin, filename: str, data: bytes) -> ImportResult:
    """Check every row; if all are good, add every user in one transaction with one audit entry."""
    rows = parse(read_table(filename, data))
    result = ImportResult(rows=len(rows))
    items: list[tuple[UserInput, str]] = []
    seen: list[str] = []
    for number, row in rows:
        item = UserInput(row.get("username", "").strip(), row.get("name", "").strip(), split_roles(row.get("roles", "")),
                         _unit_id(admin.engine, row.get("unit", "").strip()), row.get("password", ""))
        errors = admin.problems(item, new=True, taken=seen)
        seen.append(item.username)
        if errors:
            result.problems.append(RowProblem(number, item.username, [m for ms in errors.values() for m in ms]))
        else:
            items.append((item, item.password or generate_password()))
    if result.problems:
        return result
    users = [User(i.username, i.name, i.roles, i.unit, hash_password(pw)) for i, pw in items]  # slow: outside the lock
    with admin.engine.store.transaction() as tx:
        clash = [u.username for u in users if admin.read.user_doc(u.username, tx) is not None]
        if clash:  # someone added one of them since the check: still nothing is imported
            result.problems = [RowProblem(n, r.get("username", ""), [msg("用户名已存在。", "Username already exists.")])
                               for n, r in rows if r.get("username", "").strip() in clash]
            return result
        for user in users:
            tx.insert(USERS, user.to_doc())
        admin.write_audit(tx, "import", filename[:100], {u.org_unit for u in users},
                     {"count": len(users), "usernames": [u.username for u in users]})
    result.imported = [(i.username, i.name, "" if i.password else pw) for i, pw in items]
    return result

