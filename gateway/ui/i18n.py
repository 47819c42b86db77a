"""The UI's one translation catalogue: English msgids, Vietnamese translations.

Every string a page shows goes through `_()` (templates: `{{ _("...") }}` or
`{% trans %}`; Python: `tr(lang, "...")`). The catalogue is the gettext file
gateway/ui/locale/vi/LC_MESSAGES/messages.po, read with Babel at start (no
compile step: the .po is the source and the runtime file). `python -m
gateway.ui.catalogue` lists the strings that lack a translation. English is the
msgid itself. tests/ui/test_catalogue_cpython.py extracts every msgid from
the templates and Python code with Babel and fails on one without a
Vietnamese translation.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import BinaryIO

from babel.messages.pofile import read_po
from babel.support import NullTranslations

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
HERE = os.path.dirname(os.path.abspath(__file__))
PO_PATH = os.path.join(HERE, "locale", "vi", "LC_MESSAGES", "messages.po")


class Catalogue(NullTranslations):
    """gettext over a dict read from the .po file (untranslated or fuzzy entries fall back to English)."""

    def __init__(self, messages: dict[str, str]) -> None:
        super().__init__()
        self.messages = messages

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        found = self.messages.get((msgid1, 0))  # type: ignore[call-overload]  # Vietnamese: one plural form
        return found or (msgid1 if n == 1 else msgid2)

    ugettext = gettext  # Jinja2 prefers these names when they exist (Babel's NullTranslations has them)
    ungettext = ngettext


@lru_cache(maxsize=None)
def translations(lang: str) -> NullTranslations:
    if lang != "vi":
        return Catalogue({})
    messages: dict = {}
    with open(PO_PATH, "rb") as f:
        _read(f, messages)
    return Catalogue(messages)


def _read(f: BinaryIO, messages: dict) -> None:
    for message in read_po(f, locale="vi"):
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            for i, text in enumerate(message.string or ()):
                if text:
                    messages[(message.id[0], i)] = text
        elif message.string:
            messages[message.id] = message.string


def tr(lang: str, message: str, **values: object) -> str:
    text = translations(lang).gettext(message)
    return text % values if values else text


def pick_lang(cookie: str | None, accept: str | None = None) -> str:
    """The language of a request: the staff's own choice (cookie), else Vietnamese."""
    return cookie if cookie in LANGS else DEFAULT_LANG
