"""One scale for short and long certificates: spans set for 90 days shrink with the lifetime."""
from __future__ import annotations

from datetime import timedelta

from webapp.models import utcnow
from webapp.services import lifetimes


def test_spans_shrink_in_proportion_below_90_days_and_stay_above():
    day = timedelta(days=1)
    assert lifetimes.scaled(30 * day, 90 * day) == 30 * day
    assert lifetimes.scaled(30 * day, 398 * day) == 30 * day
    assert lifetimes.scaled(30 * day, 6 * day) == 2 * day
    assert lifetimes.scaled(30 * day, None) == 30 * day  # lifetime unknown: as set


def test_the_list_colour_follows_the_share_of_the_lifetime_left():
    now = utcnow()
    day = timedelta(days=1)
    assert lifetimes.level(now - 85 * day, now + 5 * day, now) == "bad"    # 90-day, 5 days left
    assert lifetimes.level(now - 1 * day, now + 5 * day, now) == ""        # 6-day, just issued
    assert lifetimes.level(now - 4 * day, now + 1.5 * day, now) == "warn"  # 6-day, under 2 days left
    assert lifetimes.level(now - 5 * day, now + 0.5 * day, now) == "bad"   # 6-day, under 22 hours left
    assert lifetimes.level(None, now + 20 * day, now) == "warn"            # unknown lifetime: days as set


def test_time_left_reads_in_days_then_hours_then_minutes():
    now = utcnow()
    assert lifetimes.remaining(now + timedelta(days=45, hours=3), now) == "45"
    assert lifetimes.remaining(now + timedelta(hours=30), now) == "30 h"
    assert lifetimes.remaining(now + timedelta(minutes=5, seconds=1), now) == "5 min"
    assert lifetimes.adjective(timedelta(hours=160)) == "6-day"
    assert lifetimes.adjective(timedelta(hours=47)) == "47-hour"
