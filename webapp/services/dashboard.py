"""The dashboard's figures, counted in SQL: counts by status, certificates needing attention,
the expiry timeline and the scheduler's last run. The numbers come from counts over indexes
(never a pass over every row); only the few rows listed under "needs attention" are read, so
the page costs about the same with ten certificates or a hundred thousand."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, extract, func, literal, or_, select

from .. import db
from ..models import AUTO_RENEWING, SERVING, CAProfile, Certificate, TechZone, UTCDateTime, utcnow
from . import claims

ATTENTION_LIMIT = 10          # rows listed per category; the count says how many in all
PENDING_TOO_LONG = timedelta(days=1)
EXPIRY_WARNING = timedelta(days=30)
TIMELINE_DAYS = 90
# When every certificate still serving lives less than this many days (a fleet of short-lived
# certificates), the chart counts per day over that span instead of per week over 90 days.
SHORT_TIMELINE_DAYS = 14


@dataclass
class AttentionItem:
    id: int
    name: str
    detail: str
    at: datetime | None = None


@dataclass
class Attention:
    key: str
    title: str
    help: str
    count: int = 0
    items: list[AttentionItem] = field(default_factory=list)


@dataclass
class Week:
    start: datetime
    end: datetime   # exclusive
    expiring: int = 0
    renewals: int = 0

    @property
    def last_day(self) -> datetime:
        return self.end - timedelta(microseconds=1)


@dataclass
class Overview:
    counts: dict[str, int]            # status -> certificates
    attention: list[Attention]
    weeks: list[Week]
    bucket: str = "week"              # or "day": the chart's bars
    span_days: int = TIMELINE_DAYS

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# What each attention category means, as SQL conditions on a certificate row.
CATEGORIES = (
    ("failing", "Failing",
     "The last attempt failed, or renewals keep failing while the current version still serves."),
    ("pending", "Pending for more than a day",
     ("The _acme-challenge CNAME does not resolve into the technical zone yet: send the domain owner "
      "the instructions.")),
    ("delegation", "Delegation broken",
     ("The _acme-challenge CNAME no longer points into the technical zone: the next renewal will fail "
      "until it is restored.")),
    ("expiring", "Expiring without renewal",
     ("Auto-renew is off and it expires within 30 days (within the last third of a shorter "
      "lifetime): renew it or turn auto-renew on.")),
)


def conditions(now: datetime) -> dict:
    c = Certificate
    cutoff = now - PENDING_TOO_LONG
    return {
        # Failing or failed, as two disjoint parts each answered by its own index (an OR made
        # SQLite read every row; an IN over their UNION made PostgreSQL hash-join the table).
        "failing": (c.failing_since.is_not(None), and_(c.status == "failed", c.failing_since.is_(None))),
        # pending_since: when it last entered Pending (certificates.request sets it).
        "pending": and_(c.status == "pending", c.pending_since < cutoff),
        "delegation": c.delegation_ok.is_(False),
        # SERVING word for word: the count reads the partial index (not_after, auto_renew) first.
        "expiring": and_(SERVING, c.auto_renew.is_(False), c.not_after >= now,
                         c.not_after <= now + EXPIRY_WARNING, _last_third(now)),
    }


def _last_third(now: datetime):
    """In the last third of its lifetime (a 6-day certificate is not "expiring" the day it is
    issued): not_after - now <= (not_after - not_before) / 3, i.e. 2 not_after + not_before <=
    3 now. With the 30-day bound beside it, a 90-day or longer certificate keeps 30 days."""
    c = Certificate
    return or_(c.not_before.is_(None),
               2 * _days(c.not_after) + _days(c.not_before) <= 3 * _days(literal(now, UTCDateTime())))


def _days(x):
    """A timestamp as a number of days, for arithmetic between columns on either database."""
    if db.session().get_bind(Certificate).dialect.name == "postgresql":
        return extract("epoch", x) / 86400.0
    return func.julianday(x)


def weeks_ahead(now: datetime, days: int = TIMELINE_DAYS, step: int = 7) -> list[Week]:
    """Buckets of `step` days (weeks) from today 00:00 UTC until now + days (the last one may
    be shorter)."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    end = now + timedelta(days=days)
    weeks, edge = [], start
    while edge < end:
        weeks.append(Week(edge, min(edge + timedelta(days=step), end)))
        edge += timedelta(days=step)
    return weeks


def _week_counts(column, scope, weeks: list[Week], now: datetime) -> list:
    """One count per week of `column` within `scope` (a partial index's condition), as scalar
    subqueries: each reads one range of that index, never the table."""
    c = Certificate
    return [select(func.count()).select_from(c).where(scope, column >= max(w.start, now), column < w.end)
            .scalar_subquery() for w in weeks]


def overview(now: datetime | None = None, limit: int = ATTENTION_LIMIT) -> Overview:
    """Every figure of the dashboard in three statements, each answered from indexes: the
    status counts (the status index), the expiry and renewal weeks (range counts over two
    partial indexes) and the size of each attention category; then up to `limit` rows for each
    category that has any. At 100,000 certificates one pass over the table (the GROUP BY this
    replaced) cost 100-250 ms on PostgreSQL; these cost a few milliseconds."""
    now = now or utcnow()
    c = Certificate
    s = db.session()
    counts = {status: n for status, n in s.execute(select(c.status, func.count()).group_by(c.status))}
    # Per day when something serves and nothing serving lives SHORT_TIMELINE_DAYS or longer.
    live = and_(SERVING, c.not_after >= now)
    long_lived = or_(c.not_before.is_(None), _days(c.not_after) - _days(c.not_before) >= SHORT_TIMELINE_DAYS)
    any_live, any_long = s.execute(select(exists().where(live), exists().where(live, long_lived)),
                                   bind_arguments={"mapper": c}).one()
    by_day = any_live and not any_long
    weeks = weeks_ahead(now, SHORT_TIMELINE_DAYS, 1) if by_day else weeks_ahead(now)
    # What still serves and will lapse (Active, Failed or Processing: a renewal under way), and
    # the renewals planned for Active, auto-renewing certificates.
    expiring = _week_counts(c.not_after, SERVING, weeks, now)
    renewing = _week_counts(c.renew_at, AUTO_RENEWING, weeks, now)
    row = s.execute(select(*expiring, *renewing)).one()
    for i, week in enumerate(weeks):
        week.expiring, week.renewals = row[i] or 0, row[len(weeks) + i] or 0
    conds = conditions(now)
    parts = [(key, part) for key, cond in conds.items() for part in (cond if isinstance(cond, tuple) else (cond,))]
    sizes = s.execute(select(*[select(func.count()).select_from(c).where(part).scalar_subquery()
                               for _key, part in parts])).one()
    totals = {key: 0 for key in conds}
    for (key, _part), n in zip(parts, sizes):
        totals[key] += n or 0
    attention = [Attention(key, title, help_, totals[key]) for key, title, help_ in CATEGORIES]
    for group in attention:
        if group.count:
            group.items = _items(group.key, conds[group.key], now, limit)
    return Overview(counts, attention, weeks, "day" if by_day else "week",
                    SHORT_TIMELINE_DAYS if by_day else TIMELINE_DAYS)


def _items(key: str, cond, now: datetime, limit: int) -> list[AttentionItem]:
    """The first `limit` certificates of one category, reading only the columns shown."""
    c = Certificate
    s = db.session()
    if key == "failing":  # the longest failing first, then the Failed ones without a date
        columns = (c.id, c.common_name, c.status, c.failing_since, c.last_error)
        rows = list(s.execute(select(*columns).where(cond[0]).order_by(c.failing_since, c.id).limit(limit)))
        if len(rows) < limit:
            rows += s.execute(select(*columns).where(cond[1]).order_by(c.id).limit(limit - len(rows)))
        return [AttentionItem(r.id, r.common_name, _short(r.last_error) or
                              ("renewals failing" if r.status == "active" else r.status), r.failing_since) for r in rows]
    if key == "pending":
        rows = s.execute(select(c.id, c.common_name, c.last_error, c.pending_since).where(cond)
                         .order_by(c.pending_since, c.id).limit(limit))
        return [AttentionItem(r.id, r.common_name, _short(r.last_error) or "waiting for the CNAME", r.pending_since)
                for r in rows]
    if key == "delegation":
        rows = s.execute(select(c.id, c.common_name, c.delegation_message, c.delegation_checked_at).where(cond)
                         .order_by(c.delegation_checked_at, c.id).limit(limit))
        return [AttentionItem(r.id, r.common_name, _short(r.delegation_message) or "CNAME missing or wrong",
                              r.delegation_checked_at) for r in rows]
    rows = s.execute(select(c.id, c.common_name, c.not_after).where(cond).order_by(c.not_after, c.id).limit(limit))
    return [AttentionItem(r.id, r.common_name, _expires_in(r.not_after - now), r.not_after) for r in rows]


def _expires_in(left: timedelta) -> str:
    days = left.days
    return "expires within a day" if days < 1 else f"expires in {days} day{'s' if days != 1 else ''}"


@dataclass
class SchedulerInfo:
    last_run: datetime | None
    running_here: str  # this process's scheduler state, or "not running"
    stale: bool        # nothing dispatched for longer than a few ticks


def scheduler_info(now: datetime | None = None, state=None) -> SchedulerInfo:
    """When any process last dispatched (the lease), and this process's own scheduler."""
    now = now or utcnow()
    last = claims.lease_last_run("dispatch")
    here = state.scheduler.state_name() if state is not None and state.scheduler else "not running"
    return SchedulerInfo(last, here, last is None or now - last > timedelta(minutes=5))


def failing_profiles() -> list[CAProfile]:
    return list(db.session().execute(select(CAProfile).where(CAProfile.last_test_ok.is_(False))
                                      .order_by(CAProfile.name)).scalars())


def failing_zones() -> list[TechZone]:
    """Technical zones whose last health check failed: nothing issues or renews through them."""
    return list(db.session().execute(select(TechZone).where(TechZone.last_check_ok.is_(False))
                                      .order_by(TechZone.name)).scalars())


def profile_count() -> int:
    return db.session().scalar(select(func.count()).select_from(CAProfile)) or 0


def _short(text: str | None, limit: int = 160) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"
