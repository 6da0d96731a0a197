"""Batched "last seen"/"last used" writes: buffered per process, flushed in one transaction."""
from __future__ import annotations

from datetime import timedelta

from webapp import db
from webapp.models import Agent, utcnow
from webapp.services import touches


def _agent(app) -> int:
    with app.app_context():
        row = Agent(token_id=1, name="web-01", address="", last_seen_at=utcnow() - timedelta(hours=1))
        db.session().add(row)
        db.session().commit()
        return row.id


def test_a_touch_waits_for_the_flush_then_lands_in_one_go(app, monkeypatch):
    agent_id = _agent(app)
    later = utcnow()
    with app.app_context():
        touches.touch(Agent, agent_id, last_seen_at=later, address="192.0.2.1")
        db.session().expire_all()
        assert db.session().get(Agent, agent_id).address == ""  # buffered, not written
        assert touches.flush() == 1
        db.session().expire_all()
        row = db.session().get(Agent, agent_id)
        assert (row.address, row.last_seen_at) == ("192.0.2.1", later)


def test_a_touch_after_the_flush_interval_writes_the_whole_buffer(app, monkeypatch):
    agent_id = _agent(app)
    monkeypatch.setattr(touches, "FLUSH_EVERY", 0)
    with app.app_context():
        touches.touch(Agent, agent_id, last_seen_at=utcnow(), address="192.0.2.2")
        db.session().expire_all()
        assert db.session().get(Agent, agent_id).address == "192.0.2.2"
