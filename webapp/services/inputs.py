"""Numbers typed into forms and query strings, checked before int() sees them: Python refuses
to convert more than 4,300 digits (ValueError), a database column holds 63 bits (an
OverflowError or a driver error), and "²".isdigit() is True."""
from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and few enough for any column


def whole_number(text: object, low: int, high: int) -> int | None:
    """The whole number `text` spells if it lies from `low` to `high`, else None."""
    raw = str(text if text is not None else "").strip()
    if not _DIGITS.fullmatch(raw):
        return None
    number = int(raw)
    return number if low <= number <= high else None


def page_number(text: object, last: int = 2 ** 31) -> int:
    """A list's page number: 1 for anything that is not one, at most `last` (the offset, page
    times page size, must stay a BIGINT); the view clamps to the last page it has."""
    raw = str(text if text is not None else "").strip()
    if not _DIGITS.fullmatch(raw):
        # A run of digits too long for a page number points past the end: the last page.
        return last if re.fullmatch(r"[0-9]+", raw) else 1
    return min(max(int(raw), 1), last)
