"""The UI's languages: English (the msgids, in the code and the templates) and French (the
gettext catalog ``serve/locale/fr/LC_MESSAGES/messages.po``, compiled in memory on first use:
no ``.mo`` to keep in step). The API never goes through here: its JSON stays English enums.

A page's language: ``?lang=`` (the switch's links; it is then kept in a cookie), else the
cookie, else the browser's ``Accept-Language``, else English. It is held in a context variable
for the request, read by :func:`gettext` (the templates' ``_()`` and ``{% trans %}``) and by
the Babel formatters of numbers and dates.
"""

from __future__ import annotations

import gettext as _gettext
import io
from contextvars import ContextVar
from datetime import date, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlencode

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations
from starlette.requests import Request
from starlette.responses import Response

LOCALES: tuple[str, ...] = ("en", "fr")
DEFAULT = "en"
NAMES = {"en": "English", "fr": "Français"}
COOKIE = "photograde_lang"
COOKIE_AGE = 365 * 24 * 3600
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
_current: ContextVar[str] = ContextVar("photograde_ui_locale", default=DEFAULT)


def N_(message: str) -> str:
    """Mark ``message`` for the catalog; it is translated where it is shown."""
    return message


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The catalog of ``locale`` (English: none, the msgids are English)."""
    po = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if locale == DEFAULT or not po.exists():
        return _gettext.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog)  # fuzzy entries left out
    buf.seek(0)
    return Translations(fp=buf)


def current() -> str:
    return _current.get()


def gettext(message: str) -> str:
    """``message`` in the request's language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


_ = gettext


def accepted(header: str) -> str | None:
    """The first of :data:`LOCALES` in an ``Accept-Language`` header, by its q-values."""
    ranked = []
    for i, part in enumerate(header.split(",")[:32]):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().split("-")[0].lower()))
    for q, _i, lang in sorted(ranked):
        if q < 0 and lang in LOCALES:
            return lang
    return None


def choose(request: Request) -> str:
    """The page's language: ``?lang=``, the cookie, ``Accept-Language``, English."""
    for lang in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if lang in LOCALES:
            return str(lang)
    return accepted(request.headers.get("accept-language", "")) or DEFAULT


def activate(request: Request) -> str:
    """Choose the request's language and make it the current one."""
    lang = choose(request)
    _current.set(lang)
    return lang


async def use_locale(request: Request) -> None:
    """A dependency of the UI's routes: their Python-side words are in the page's language."""
    activate(request)


def remember(request: Request, response: Response) -> None:
    """Keep a language chosen with ``?lang=`` in a cookie (a year; not a secret)."""
    lang = request.query_params.get("lang")
    if lang in LOCALES and request.cookies.get(COOKIE) != lang:
        response.set_cookie(COOKIE, str(lang), max_age=COOKIE_AGE, path="/", samesite="lax",
                            httponly=True, secure=request.url.scheme == "https")


def switch_links(request: Request) -> list[dict[str, str]]:
    """The switch: this page in each language (its other query parameters kept)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return [{"lang": lang, "label": lang.upper(), "name": NAMES[lang],
             "href": f"{request.url.path}?{urlencode([*query, ('lang', lang)])}"}
            for lang in LOCALES]


def percent(value: float | None) -> str:
    """A share (0 to 1) as a whole percentage in the current locale ("12%", "12 %")."""
    return "-" if value is None else format_percent(value, locale=_current.get())


def number(value: float | int | None) -> str:
    return "-" if value is None else format_decimal(value, locale=_current.get())


def when(value: str | datetime | None) -> str:
    """An ISO timestamp as a short date and time in the current locale (UTC)."""
    if not value:
        return "-"
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    lang = _current.get()
    return f"{format_date(dt, 'medium', locale=lang)} {format_time(dt, 'short', locale=lang)}"


def day(value: str | date | None) -> str:
    """An ISO date as a medium date in the current locale."""
    if not value:
        return "-"
    d = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    return format_date(d, "medium", locale=_current.get())
