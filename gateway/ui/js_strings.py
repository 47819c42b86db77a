"""The words the UI's JavaScript shows, from the one catalogue (locale/vi/LC_MESSAGES/messages.po).

Each key is what a script asks for with `denloa.s("key", {name: value})`
(static/app.js); the value is the English msgid, marked with `N_()` so the
catalogue check (gateway/ui/catalogue.py) extracts it like any template
string. `Web.render` hands `for_lang(lang)` to base.html, which writes it once
per page as `<script type="application/json" id="denloa-strings">`.
Placeholders are Python's `%(name)s` (and `%%` for a percent sign): app.js
fills them in the same way `tr()` does on the server.
"""
from __future__ import annotations

from functools import lru_cache

from gateway.ui.i18n import translations


def N_(message: str) -> str:
    """Marks a msgid for extraction; translated when a page renders."""
    return message


STRINGS: dict[str, str] = {
    # app.js: denloa.api() when the server sent no message of its own
    "api.failed": N_("Could not do that (status %(status)s)"),
    # broadcasts.js: TTS preview, upload, recording in the browser
    "tts.making": N_("Making the voice…"),
    "tts.ready": N_("Ready: playing the preview"),
    "clip.uploading": N_("Uploading and checking the file…"),
    "clip.added": N_("Added to the library: %(title)s (%(seconds)s s)"),
    "clip.no_file": N_("No file chosen"),
    "rec.unsupported": N_("This browser cannot record"),
    "rec.recording": N_("Recording… press Stop when done"),
    "rec.no_mic": N_("Could not open the microphone (allow it in the browser)"),
    # emergency.js: the confirm step with the microphone
    "emergency.no_mic": N_("The browser's microphone cannot be used"),
    # lamps.js and nodes.js: live badges
    "node.online": N_("online"),
    "node.offline": N_("offline"),
    "lamp.lit": N_("lit %(level)s %%"),
    "lamp.off": N_("off"),
    # nodes.js: the telemetry charts of a node's page
    "chart.empty": N_("No readings in this period."),
    "chart.summary": N_("Latest %(last)s %(unit)s (%(time)s), lowest %(min)s, highest %(max)s; %(n)s readings."),
    "chart.drawn": N_("Readings of the last %(hours)s hours drawn."),
    "chart.failed": N_("Could not load the readings."),
}


@lru_cache(maxsize=None)
def for_lang(lang: str) -> dict[str, str]:
    """key -> the text in `lang` (placeholders left for the script to fill)."""
    catalogue = translations(lang)
    return dict((key, catalogue.gettext(message)) for key, message in STRINGS.items())
