"""Check the UI's translation catalogue: `python -m gateway.ui.catalogue` lists every msgid of the
templates and the UI's Python code (extracted with Babel) that has no Vietnamese translation, and
writes them as empty entries to stdout in .po form, ready to translate; exit 1 when one is missing.
"""
from __future__ import annotations

import io
import os
import sys

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

from gateway.ui.i18n import HERE, translations

METHODS = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "tr": (2,), "N_": None}


def msgids() -> dict[str, list[str]]:
    """msgid -> where it is used (file:line)."""
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            HERE, METHODS, OPTIONS, KEYWORDS):
        for text in (message if isinstance(message, tuple) else (message,)):
            if text:
                found.setdefault(text, []).append("%s:%d" % (filename, lineno))
    return found


def missing() -> dict[str, list[str]]:
    vi = translations("vi")
    return dict((m, where) for m, where in msgids().items() if vi.gettext(m) == m and not _same_in_both(m))


def _same_in_both(message: str) -> bool:
    """Strings that read the same in both languages (a unit, a code) need no translation."""
    return not any(ch.isalpha() for ch in message) or message in SAME


SAME = {"OK", "CSV", "Email", "RSSI", "ID", "MQTT", "TTS", "dBm", "kWh", "Wh", "W", "%"}


def main() -> int:
    gaps = missing()
    if not gaps:
        print("catalogue: every one of %d strings has a Vietnamese translation" % len(msgids()))
        return 0
    catalog = Catalog(locale="vi")
    for message, where in sorted(gaps.items()):
        catalog.add(message, "", locations=[(w.rsplit(":", 1)[0], int(w.rsplit(":", 1)[1])) for w in where])
    out = io.BytesIO()
    write_po(out, catalog, omit_header=True, width=120)
    sys.stdout.write(out.getvalue().decode())
    print("catalogue: %d strings without a Vietnamese translation" % len(gaps), file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
