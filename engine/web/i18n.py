"""Language: Chinese first, English second; the choice is kept per user (or per session before login)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import g, session

LANGS = ("zh", "en")


def compile_catalogs(directory: Path) -> None:
    """Build ``.mo`` files from the committed ``.po`` files when missing or older (no build step needed)."""
    for po in directory.glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            with po.open("rb") as fh:
                catalog = read_po(fh)
            tmp = mo.with_suffix(".mo.tmp")
            with tmp.open("wb") as fh:
                write_mo(fh, catalog)
            tmp.replace(mo)


def current_lang() -> str:
    user = g.get("user")
    if user is not None and user.lang in LANGS:
        return user.lang
    lang = session.get("lang")
    return lang if lang in LANGS else "zh"


def select_locale() -> str:
    return current_lang()


def tr(text: Mapping[str, str] | None, lang: str | None = None) -> str:
    """A ``{zh, en}`` label from a definition in the current language."""
    if not text:
        return ""
    lang = lang or current_lang()
    return text.get(lang) or text.get("zh") or text.get("en") or ""


def tr_any(value: Any) -> str:
    return tr(value) if isinstance(value, Mapping) else str(value or "")
