"""Check the UI's translation catalogue: `python -m gateway.ui.catalogue` lists every msgid of the
templates and the UI's Python code (extracted with Babel) that has no Vietnamese translation, and
writes them as empty entries to stdout in .po form, ready to translate; exit 1 when one is missing.

The JavaScript (static/*.js, not vendor/) takes its words from the same catalogue: a script asks
`denloa.s("key")` and gateway/ui/js_strings.py maps the key to an English msgid (extracted above
like any other). `js_problems()` fails on a key the module lacks, on a `denloa.s()` whose key is
not a plain string literal, on a key no script uses, and on the old `denloa.t(vi, en)` pairs
(words written in the script itself, outside the catalogue).
"""
from __future__ import annotations

import glob
import io
import os
import re
import sys

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

from gateway.ui.i18n import HERE, translations
from gateway.ui.js_strings import STRINGS

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


STATIC = os.path.join(HERE, "static")
JS_CALL = re.compile(r"\bdenloa\s*\.\s*s\s*\(")                  # every denloa.s( call ...
JS_KEY = re.compile(r"\bdenloa\s*\.\s*s\s*\(\s*([\"'])([^\"'\\]+)\1")  # ... and the ones with a literal key
JS_PAIR = re.compile(r"\bdenloa\s*\.\s*t\b|\.t\s*\(\s*[\"'`]")        # denloa.t / d.t("vi", "en")
JS_SKIP = re.compile(r"(\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|/\*[\s\S]*?\*/|//[^\n]*")


def _code(text: str) -> str:
    """The script without its comments (kept: strings, and the line breaks, so line numbers still match)."""
    return JS_SKIP.sub(lambda m: m.group(1) if m.group(1) is not None else "\n" * m.group(0).count("\n"), text)


def js_problems(static: str = STATIC, strings: dict[str, str] | None = None) -> list[str]:
    """What is wrong with the scripts' words (file:line: why); empty when every one is in the catalogue."""
    known = STRINGS if strings is None else strings
    problems: list[str] = []
    used: set[str] = set()
    for path in sorted(glob.glob(os.path.join(static, "*.js"))):  # vendor/ is a subfolder: not read
        name = os.path.relpath(path, os.path.dirname(static))  # static/app.js
        with open(path, encoding="utf-8") as f:
            text = _code(f.read())

        def line(at: int) -> int:
            return text.count("\n", 0, at) + 1
        for m in JS_PAIR.finditer(text):
            problems.append("%s:%d: words written in the script (denloa.t): use denloa.s(key) and js_strings.py"
                            % (name, line(m.start())))
        keys = dict((m.start(), m.group(2)) for m in JS_KEY.finditer(text))
        for m in JS_CALL.finditer(text):
            key = keys.get(m.start())
            if key is None:
                problems.append("%s:%d: denloa.s() needs a plain string key" % (name, line(m.start())))
            elif key not in known:
                problems.append("%s:%d: key %r is not in gateway/ui/js_strings.py" % (name, line(m.start()), key))
            else:
                used.add(key)
    for key in sorted(set(known) - used):
        problems.append("gateway/ui/js_strings.py: key %r is used by no script" % key)
    return problems


def main() -> int:
    gaps = missing()
    js = js_problems()
    for problem in js:
        print("catalogue: " + problem, file=sys.stderr)
    if not gaps:
        print("catalogue: every one of %d strings has a Vietnamese translation" % len(msgids()))
        return 1 if js else 0
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
