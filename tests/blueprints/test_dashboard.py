"""The dashboard: counts by status, the four attention lists, the expiry timeline (SVG and its
table), the scheduler's last run and failing CA profiles; aggregated in SQL, so its cost does
not grow with the number of certificates."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, update
from sqlalchemy.engine import Engine

from tests.lab.servers import TECH_ZONE
from tests.conftest import make_certificate as make
from webapp import db
from webapp.models import CAProfile, Certificate, utcnow
from webapp.services import ca_profiles, certificates, claims, dashboard






def text(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def section(html: str, section_id: str) -> str:
    """The HTML of one <section>/<article> by id (enough for these flat templates)."""
    match = re.search(rf'<(section|article)[^>]*id="{section_id}".*?</\1>', html, re.DOTALL)
    return match.group(0) if match else ""


def count_of(html: str, status: str) -> int:
    return int(re.search(rf'id="count-{status}">\s*<span class="sslm-count">(\d+)</span>', html).group(1))


# -- counts --------------------------------------------------------------------------------------

def test_counts_by_status_link_to_the_filtered_certificate_list(admin_client, app, profile_id):
    for i in range(3):
        make(app, profile_id, f"a{i}.customer.test", status="active", not_after=utcnow() + timedelta(days=80))
    make(app, profile_id, "p.customer.test", status="pending")
    html = text(admin_client.get("/"))
    assert count_of(html, "active") == 3 and count_of(html, "pending") == 1 and count_of(html, "failed") == 0
    assert 'href="/certificates/?status=active"' in html
    assert "4 in all" in html


# -- attention -----------------------------------------------------------------------------------

def test_failing_certificates_need_attention_with_a_link_each(admin_client, app, profile_id):
    failed = make(app, profile_id, "failed.customer.test", status="failed", last_error="rateLimited: too many")
    renewing = make(app, profile_id, "renew.customer.test", status="active",
                    failing_since=utcnow() - timedelta(days=2), last_error="DNS error")
    make(app, profile_id, "fine.customer.test", status="active")
    box = section(text(admin_client.get("/")), "attention-failing")
    assert f'href="/certificates/{failed}"' in box and f'href="/certificates/{renewing}"' in box
    assert "rateLimited: too many" in box and "fine.customer.test" not in box


def test_failing_counts_each_certificate_once_the_longest_failing_first(app, profile_id):
    """Failing is two disjoint index lookups (renewals failing since a date; Failed without
    one): a Failed certificate with a date is counted once, and the oldest date leads."""
    now = utcnow()
    undated = make(app, profile_id, "undated.customer.test", status="failed")
    dated = make(app, profile_id, "dated.customer.test", status="failed", failing_since=now - timedelta(days=1))
    oldest = make(app, profile_id, "oldest.customer.test", status="active", failing_since=now - timedelta(days=5))
    with app.app_context():
        group = next(a for a in dashboard.overview(now).attention if a.key == "failing")
        assert group.count == 3
        assert [item.id for item in group.items] == [oldest, dated, undated]
        assert [item.id for item in dashboard.overview(now, limit=2).attention[0].items] == [oldest, dated]


def test_pending_for_more_than_a_day_needs_attention_but_a_recent_request_does_not(admin_client, app, profile_id):
    old = make(app, profile_id, "stuck.customer.test")
    retried = make(app, profile_id, "retried.customer.test")
    fresh = make(app, profile_id, "fresh.customer.test")
    with app.app_context():
        for cert_id in (old, retried, fresh):
            certificates.request(certificates.get(cert_id))
        two_days_ago = utcnow() - timedelta(days=2)
        # `old` was created and requested two days ago; `retried` too, but it failed and was
        # retried (entered Pending again) just now; `fresh` is new.
        db.session().execute(update(Certificate).where(Certificate.id.in_((old, retried)))
                             .values(created_at=two_days_ago, pending_since=two_days_ago))
        db.session().commit()
    with app.app_context():
        db.session().execute(update(Certificate).where(Certificate.id == retried).values(status="failed"))
        db.session().commit()
        certificates.request(certificates.get(retried))
    box = section(text(admin_client.get("/")), "attention-pending")
    assert f'href="/certificates/{old}"' in box
    assert f'href="/certificates/{retried}"' not in box and f'href="/certificates/{fresh}"' not in box


def test_broken_delegation_needs_attention(admin_client, app, profile_id):
    broken = make(app, profile_id, "moved.customer.test", status="active", delegation_ok=False,
                  delegation_message="_acme-challenge.moved.customer.test points elsewhere")
    make(app, profile_id, "ok.customer.test", status="active", delegation_ok=True)
    box = section(text(admin_client.get("/")), "attention-delegation")
    assert f'href="/certificates/{broken}"' in box and "points elsewhere" in box
    assert "ok.customer.test" not in box


def test_expiring_within_30_days_without_auto_renew_needs_attention(admin_client, app, profile_id):
    soon = make(app, profile_id, "soon.customer.test", status="active", auto_renew=False,
                not_after=utcnow() + timedelta(days=10, hours=1))
    make(app, profile_id, "renews.customer.test", status="active", auto_renew=True,
         not_after=utcnow() + timedelta(days=10))
    make(app, profile_id, "later.customer.test", status="active", auto_renew=False,
         not_after=utcnow() + timedelta(days=45))
    box = section(text(admin_client.get("/")), "attention-expiring")
    assert f'href="/certificates/{soon}"' in box and "expires in 10 days" in box
    assert "renews.customer.test" not in box and "later.customer.test" not in box


def test_a_long_attention_list_shows_the_first_few_and_how_many_more(admin_client, app, profile_id):
    with app.app_context():
        db.session().execute(insert(Certificate), [
            {"profile_id": profile_id, "domains": [f"f{i}.customer.test"], "common_name": f"f{i}.customer.test",
             "status": "failed", "last_error": "boom"} for i in range(dashboard.ATTENTION_LIMIT + 5)])
        db.session().commit()
    box = section(text(admin_client.get("/")), "attention-failing")
    assert len(re.findall(r'href="/certificates/\d+"', box)) == dashboard.ATTENTION_LIMIT
    assert "and 5 more" in box and 'href="/certificates/?status=failed"' in box


def test_nothing_needing_attention_says_so(admin_client, app, profile_id):
    make(app, profile_id, "fine.customer.test", status="active", not_after=utcnow() + timedelta(days=60))
    html = text(admin_client.get("/"))
    assert 'id="attention-none"' in html and 'id="attention-failing"' not in html


# -- expiry timeline -------------------------------------------------------------------------

def test_the_timeline_counts_expiries_per_week_and_marks_renewals(app, profile_id):
    now = utcnow()
    make(app, profile_id, "w0.customer.test", status="active", not_after=now + timedelta(days=2),
         renew_at=now + timedelta(days=9))
    make(app, profile_id, "w0b.customer.test", status="active", not_after=now + timedelta(days=3))
    make(app, profile_id, "w5.customer.test", status="active", not_after=now + timedelta(days=37),
         renew_at=now + timedelta(days=10))
    make(app, profile_id, "off.customer.test", status="active", auto_renew=False,
         not_after=now + timedelta(days=60), renew_at=now + timedelta(days=11))  # no renewal: auto-renew off
    make(app, profile_id, "far.customer.test", status="active", not_after=now + timedelta(days=200))
    make(app, profile_id, "gone.customer.test", status="revoked", not_after=now + timedelta(days=2))
    make(app, profile_id, "renewing.customer.test", status="processing", not_after=now + timedelta(days=4))
    with app.app_context():
        weeks = dashboard.overview(now).weeks
    assert len(weeks) == 13 and weeks[0].start <= now < weeks[0].end
    assert [w.expiring for w in weeks][:9] == [3, 0, 0, 0, 0, 1, 0, 0, 1]
    # The one being renewed counts (it still serves); the revoked one and the one in 200 days do not.
    assert sum(w.expiring for w in weeks) == 5
    assert weeks[1].renewals == 2 and sum(w.renewals for w in weeks) == 2


def test_the_timeline_is_an_svg_with_a_table_as_text_alternative(admin_client, app, profile_id):
    make(app, profile_id, "soon.customer.test", status="active", not_after=utcnow() + timedelta(days=3),
         renew_at=utcnow() + timedelta(days=1))
    box = section(text(admin_client.get("/")), "expiry-timeline")
    assert re.search(r'<svg [^>]*role="img" aria-labelledby="chart-title chart-desc"', box)
    assert "1 certificate expires and\n        1 renewal is planned" in box
    assert box.count('class="sslm-chart-bar"') == 1 and box.count('class="sslm-chart-renewal"') == 1
    table = re.search(r'<table id="timeline-table">.*?</table>', box, re.DOTALL).group(0)
    assert table.count('<th scope="row">') == 13
    assert re.search(r"<td>1</td><td>1</td>", table)
    assert "style=" not in box and "<script" not in box  # the CSP allows neither


# -- scheduler and CA profiles ---------------------------------------------------------------

def test_the_last_scheduler_run_is_shown_and_never_when_none(admin_client, app):
    box = section(text(admin_client.get("/")), "scheduler")
    assert "<strong>never</strong>" in box and "sslmanager run" in box
    with app.app_context():
        assert claims.take_lease("dispatch", seconds=30)
        at = claims.lease_last_run("dispatch")
    box = section(text(admin_client.get("/")), "scheduler")
    assert at.strftime("%Y-%m-%d %H:%M:%S UTC") in box and "never" not in box
    assert "sslmanager run" not in box  # fresh: no warning


def test_ca_profiles_whose_test_fails_are_listed_with_the_reason(admin_client, app, profile_id):
    with app.app_context():
        db.session().execute(update(CAProfile).where(CAProfile.id == profile_id).values(
            last_test_ok=False, last_test_message="fetch directory: connection refused", last_test_at=utcnow()))
        db.session().commit()
    box = section(text(admin_client.get("/")), "failing-profiles")
    assert f'href="/ca/{profile_id}/edit"' in box and "connection refused" in box


# -- cost ----------------------------------------------------------------------------------------

def test_the_dashboard_costs_the_same_queries_with_10000_certificates(admin_client, app, profile_id):
    statements: list[str] = []
    now = utcnow()

    def add(numbers):
        statuses = ("active", "active", "active", "pending", "failed", "draft")
        with app.app_context():
            db.session().execute(insert(Certificate), [
                {"profile_id": profile_id, "domains": [f"h{i}.customer.test"], "common_name": f"h{i}.customer.test",
                 "status": statuses[i % 6], "auto_renew": i % 7 != 0, "not_after": now + timedelta(days=1 + i % 120),
                 "renew_at": now + timedelta(days=1 + i % 80), "delegation_ok": i % 50 != 0,
                 "created_at": now - timedelta(days=i % 4), "pending_since": now - timedelta(days=i % 4)}
                for i in numbers])
            db.session().commit()

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    def measure():
        statements.clear()
        started = time.perf_counter()
        html = text(admin_client.get("/"))
        return html, list(statements), time.perf_counter() - started

    event.listen(Engine, "before_cursor_execute", record)
    try:
        add(range(50))  # a few in every attention category
        html, few, _ = measure()
        assert all(f'id="attention-{key}"' in html for key in ("failing", "pending", "delegation", "expiring"))
        add(range(50, 10_000))
        html, many, elapsed = measure()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(many) == len(few)  # no query per certificate
    # Certificates are only ever counted, grouped or listed a few at a time: never read whole.
    for statement in many:
        if "FROM sslm_certificate" in statement:
            # EXISTS stops at the first row (the chart's per-day question: anything short-lived?)
            counted = statement.lstrip().startswith(("SELECT (SELECT count(*)", "SELECT EXISTS"))
            assert counted or "GROUP BY" in statement or "LIMIT" in statement, statement
    assert count_of(html, "active") == 5001 and elapsed < 1.5, elapsed


@pytest.mark.lab
def test_the_dashboard_figures_are_the_same_on_postgresql(tmp_path, pg_database):
    from tests.conftest import make_app
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=pg_database)
    try:
        with app.app_context():
            pid = ca_profiles.create({"name": "LE", "module": "letsencrypt", "email": "ops@example.com",
                                      "dns_zone": TECH_ZONE}, complete=True).id
        now = utcnow()
        stuck = make(app, pid, "stuck.customer.test")
        make(app, pid, "failed.customer.test", status="failed")
        make(app, pid, "soon.customer.test", status="active", auto_renew=False, not_after=now + timedelta(days=5),
             renew_at=now + timedelta(days=2))
        make(app, pid, "auto.customer.test", status="active", not_after=now + timedelta(days=20),
             renew_at=now + timedelta(days=8))
        with app.app_context():
            certificates.request(certificates.get(stuck))
            db.session().execute(update(Certificate).where(Certificate.id == stuck)
                                 .values(created_at=now - timedelta(days=3), pending_since=now - timedelta(days=3)))
            db.session().commit()
            figures = dashboard.overview(now)
            counts, weeks = figures.counts, figures.weeks
            groups = {g.key: g.count for g in figures.attention}
        assert counts == {"pending": 1, "failed": 1, "active": 2}
        assert groups == {"failing": 1, "pending": 1, "delegation": 0, "expiring": 1}
        assert [w.expiring for w in weeks][:3] == [1, 0, 1] and [w.renewals for w in weeks][:2] == [0, 1]
    finally:
        with app.app_context():
            db.session().remove()
            app.extensions["sslmanager"].engine.dispose()


# -- short-lived certificates -------------------------------------------------------------------

def _short_fleet_app(app):
    with app.app_context():
        return ca_profiles.create({"name": "LE", "module": "letsencrypt", "email": "ops@example.com",
                                   "dns_zone": TECH_ZONE}, complete=True).id


def test_a_short_lived_certificate_needs_attention_only_in_its_last_third(any_db_app):
    """Auto-renew off: a 90-day certificate is listed within 30 days of expiry, a 6-day one
    only in the last 2 days of its life, not the day it is issued (SQLite and PostgreSQL)."""
    app, now = any_db_app, utcnow()
    pid = _short_fleet_app(app)
    fresh = make(app, pid, "fresh.customer.test", status="active", auto_renew=False,
                 not_before=now - timedelta(hours=2), not_after=now + timedelta(days=6) - timedelta(hours=2))
    late = make(app, pid, "late.customer.test", status="active", auto_renew=False,
                not_before=now - timedelta(days=4, hours=12), not_after=now + timedelta(days=1, hours=12))
    long_ = make(app, pid, "long.customer.test", status="active", auto_renew=False,
                 not_before=now - timedelta(days=65), not_after=now + timedelta(days=25))
    with app.app_context():
        expiring = next(a for a in dashboard.overview(now).attention if a.key == "expiring")
    assert {item.id for item in expiring.items} == {late, long_} and fresh not in {i.id for i in expiring.items}
    assert expiring.count == 2


def test_a_fleet_of_short_lived_certificates_is_charted_per_day(any_db_app):
    app, now = any_db_app, utcnow()
    pid = _short_fleet_app(app)
    for i in range(3):
        make(app, pid, f"s{i}.customer.test", status="active", not_before=now - timedelta(days=i),
             not_after=now + timedelta(days=6 - i), renew_at=now + timedelta(days=3 - i, hours=1))
    with app.app_context():
        figures = dashboard.overview(now)
    # Days from today 00:00 UTC to now + 14 days: the last one partial.
    assert figures.bucket == "day" and len(figures.weeks) == dashboard.SHORT_TIMELINE_DAYS + 1
    assert [d.expiring for d in figures.weeks][:8] == [0, 0, 0, 0, 1, 1, 1, 0]
    assert sum(d.renewals for d in figures.weeks) == 3
    # One 90-day certificate among them: back to weeks over 90 days.
    make(app, pid, "long.customer.test", status="active", not_before=now - timedelta(days=10),
         not_after=now + timedelta(days=80))
    with app.app_context():
        figures = dashboard.overview(now)
    assert figures.bucket == "week" and len(figures.weeks) == 13 and figures.weeks[0].expiring == 3


def test_the_short_fleet_chart_says_days(admin_client, app, profile_id):
    now = utcnow()
    make(app, profile_id, "s.customer.test", status="active", not_before=now - timedelta(days=1),
         not_after=now + timedelta(days=5))
    box = section(text(admin_client.get("/")), "expiry-timeline")
    assert "Expiry timeline: the next 14 days" in box and "Certificates expiring per day" in box
    table = re.search(r'<table id="timeline-table">.*?</table>', box, re.DOTALL).group(0)
    assert table.count('<th scope="row">') == 15 and '<th scope="col">Day</th>' in table
