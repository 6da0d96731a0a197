"""The plans of the queries that must stay cheap at 100,000 certificates (bench/scale.py times
them; here their shape is checked at a few thousand rows, on SQLite and PostgreSQL): the
dashboard's counts read indexes, never the certificate table from end to end; the scheduler's
"what is due" queries too; and PostgreSQL connections run without JIT."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, insert, select

from webapp import db
from webapp.models import AUTO_RENEWING, CAProfile, Certificate, utcnow
from webapp.services import certificates, dashboard, pipeline, renewals

ROWS = 3000


def _fill(app) -> None:
    now = utcnow()
    statuses = ("active",) * 8 + ("pending", "failed", "expired", "revoked", "draft")
    with app.app_context():
        profile = CAProfile(name="P", module="custom", dns_zone="acme.tech.test")
        db.session().add(profile)
        db.session().flush()
        db.session().execute(insert(Certificate), [
            {"profile_id": profile.id, "domains": [f"h{i}.customer.test"], "common_name": f"h{i}.customer.test",
             "search_text": f"h{i}.customer.test", "status": statuses[i % len(statuses)], "auto_renew": i % 9 != 0,
             "not_after": now + timedelta(days=1 + i % 89), "renew_at": now + timedelta(days=1 + i % 60),
             "failing_since": now if i % 97 == 0 else None, "delegation_ok": i % 113 != 0,
             "created_at": now - timedelta(days=i % 5)} for i in range(ROWS)])
        db.session().commit()


def _statements(app, fn) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))
    with app.app_context():
        engine = app.extensions["sslmanager"].engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with app.app_context():
            fn()
            db.session().remove()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return [(s, p) for s, p in seen if "sslm_certificate" in s and s.lstrip().upper().startswith("SELECT")]


def _whole_table_scans(app, statements) -> list[str]:
    """The plan lines reading sslm_certificate from end to end (not through an index). On
    PostgreSQL with sequential scans priced out: a plan that still has one found no usable
    index (a partial index whose condition the query does not repeat, say)."""
    with app.app_context():
        engine = app.extensions["sslmanager"].engine
    found = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            cursor.execute("SET enable_seqscan = off")
        for statement, params in statements:
            if postgres:
                cursor.execute("EXPLAIN " + statement, params)
                lines = [r[0] for r in cursor.fetchall()]
                found += [f"{line.strip()} <- {statement[:200]}" for line in lines
                          if "Seq Scan on sslm_certificate" in line]
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
                lines = [r[-1] for r in cursor.fetchall()]
                found += [f"{line} <- {statement[:200]}" for line in lines
                          if line.startswith("SCAN sslm_certificate") and "INDEX" not in line]
        if postgres:
            cursor.execute("RESET enable_seqscan")
        raw.rollback()
    return found


def test_the_dashboard_reads_certificates_through_indexes_only(any_db_app):
    _fill(any_db_app)
    statements = _statements(any_db_app, lambda: dashboard.overview())
    with any_db_app.app_context():
        figures = dashboard.overview()
    assert sum(figures.counts.values()) == ROWS
    assert sum(w.expiring for w in figures.weeks) > 0 and sum(w.renewals for w in figures.weeks) > 0
    assert len(statements) <= 8  # statuses, weeks, attention sizes, and up to 4 short lists
    scans = _whole_table_scans(any_db_app, statements)
    assert scans == [], "\n".join(scans)


def test_what_is_due_is_found_through_indexes(any_db_app):
    _fill(any_db_app)
    statements = _statements(any_db_app, lambda: (renewals.due(), pipeline.due_for_processing(),
                                                   renewals.ari_due(), renewals.expire()))
    scans = _whole_table_scans(any_db_app, statements)
    assert scans == [], "\n".join(scans)


def test_postgresql_connections_run_without_jit(any_db_app):
    with any_db_app.app_context():
        engine = any_db_app.extensions["sslmanager"].engine
    if engine.dialect.name != "postgresql":
        return  # SQLite has no JIT: nothing to check there
    with any_db_app.app_context(), engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"


def test_a_search_and_a_deep_page_read_through_indexes_on_postgresql(any_db_app):
    """A substring search goes through pg_trgm's index (migration 0018) and a deep page reads
    the ids it skips from the primary key only; on both databases the pages come out right."""
    _fill(any_db_app)
    with any_db_app.app_context():
        matching = sorted((c.id for c in db.session().query(Certificate).filter(
            Certificate.search_text.like("%h12%"))), reverse=True)
        assert 10 < len(matching) <= certificates.FEW_MATCHES
        rows, total = certificates.search("h12", page=2, per_page=5)
        assert total == len(matching) and [c.id for c in rows] == matching[5:10]
        everything = sorted((c.id for c in db.session().query(Certificate)), reverse=True)
        rows, total = certificates.search(page=40, per_page=50)
        assert total == ROWS and [c.id for c in rows] == everything[1950:2000]
        assert certificates.search("no-such-name")[0] == []
        engine = any_db_app.extensions["sslmanager"].engine
    if engine.dialect.name != "postgresql":
        return  # SQLite has no substring index, and its primary key walk is the table itself
    statements = _statements(any_db_app, lambda: (certificates.search("h12", page=2),
                                                  certificates.search(page=40)))
    scans = _whole_table_scans(any_db_app, statements)
    assert scans == [], "\n".join(scans)
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN SELECT id FROM sslm_certificate WHERE search_text LIKE '%%h12%%'"))
    assert "ix_sslm_certificate_search_trgm" in plan, plan


def test_sqlite_statistics_steer_the_week_counts_off_the_status_index(any_db_app):
    """Without statistics SQLite answers "active, auto-renewing, renewal in this week" through
    the status index (a third of the table at 100,000 rows: 0.1 s per week); once the
    scheduler's hourly db.refresh_statistics() ran, through the renewal-time range."""
    _fill(any_db_app)
    with any_db_app.app_context():
        engine = any_db_app.extensions["sslmanager"].engine
        refreshed = db.refresh_statistics()
    if engine.dialect.name != "sqlite":
        assert refreshed is False  # autovacuum analyses PostgreSQL by itself
        return
    now = utcnow()
    count = dashboard._week_counts(Certificate.renew_at, AUTO_RENEWING, dashboard.weeks_ahead(now)[:1], now)[0]
    with any_db_app.app_context(), engine.connect() as conn:
        tables = {t for (t,) in conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1")}
        compiled = select(count).compile(engine, compile_kwargs={"literal_binds": True})
        plan = " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    assert "sslm_certificate" in tables and all(t.startswith("sslm_") for t in tables)
    assert "ix_sslm_certificate_status" not in plan, plan
