"""Every text the pages show through gettext has its Chinese in messages.po (Chinese is the first language)."""
from __future__ import annotations

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tests.conftest import ROOT

PO = ROOT / "engine/web/translations/zh/LC_MESSAGES/messages.po"


def test_every_gettext_message_has_its_chinese():
    with open(ROOT / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, f"{filename}:{lineno}")
    with open(PO, "rb") as po_file:
        catalog = read_po(po_file)
    missing = [f"{where}: {msgid!r}" for msgid, where in sorted(found.items(), key=lambda kv: kv[1])
               if catalog.get(msgid) is None or not catalog.get(msgid).string]
    assert len(found) > 400, "the extraction found too few messages to be the whole app"
    assert missing == [], "messages without a zh translation in messages.po:\n" + "\n".join(missing)
