"""Short and long certificates on one scale. Warnings, reminders, colours and the dashboard
were set in days for 90-day certificates; a shorter certificate's spans shrink in proportion
to its lifetime, so a 6-day certificate is not "expiring" on the day it is issued (its
30-day reminder becomes 2 days, its 1-day one about 1.6 hours). Longer certificates keep the
days as set. Pure functions: the notifications, the dashboard and the pages share them."""
from __future__ import annotations

from datetime import datetime, timedelta

REFERENCE = timedelta(days=90)       # the lifetime the day thresholds were chosen for
WARN, BAD = timedelta(days=30), timedelta(days=14)  # the list's colours for a 90-day certificate
OVERDUE = timedelta(days=1)          # a planned renewal this late means no scheduler runs
OVERDUE_FLOOR = timedelta(minutes=10)  # ... but never less: the scheduler looks every few seconds


def lifetime(not_before: datetime | None, not_after: datetime | None) -> timedelta | None:
    if not_before is None or not_after is None or not_after <= not_before:
        return None
    return not_after - not_before


def scaled(span: timedelta, life: timedelta | None) -> timedelta:
    """`span`, as set for a 90-day certificate, for a certificate of lifetime `life`: the same
    when `life` is 90 days or more (or unknown), else shrunk in proportion."""
    if life is None or life >= REFERENCE:
        return span
    return span * (life / REFERENCE)


def overdue_grace(life: timedelta | None) -> timedelta:
    """How late a planned renewal may be before the scan says the scheduler is not running."""
    return max(scaled(OVERDUE, life), OVERDUE_FLOOR)


def level(not_before: datetime | None, not_after: datetime | None, now: datetime) -> str:
    """The list's colour: "bad" within 14 days (scaled), "warn" within 30 days (scaled), else ""."""
    if not_after is None:
        return ""
    left, life = not_after - now, lifetime(not_before, not_after)
    if left < scaled(BAD, life):
        return "bad"
    if left < scaled(WARN, life):
        return "warn"
    return ""


def duration(span: timedelta) -> str:
    """A span in the largest unit that still reads well: "45 days", "11 hours", "4 minutes"."""
    seconds = max(0, int(span.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size:
            n = seconds // size
            return f"{n} {unit}s"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def adjective(span: timedelta) -> str:
    """A lifetime as an adjective: "90-day", "160-hour", "40-second"."""
    words = duration(span).split()
    return f"{words[0]}-{words[1].rstrip('s')}"


def remaining(not_after: datetime | None, now: datetime) -> str:
    """Time left as the list shows it: whole days, or "20 h", "5 min" in the last two days."""
    if not_after is None:
        return ""
    left = not_after - now
    if left >= timedelta(days=2) or left < timedelta(0):
        return str(left.days)
    number, unit = duration(left).split()
    return f"{number} {SHORT_UNITS[unit.rstrip('s')]}"


SHORT_UNITS = {"day": "d", "hour": "h", "minute": "min", "second": "s"}
