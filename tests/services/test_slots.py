"""The per-CA bound of one process, and per_ca's pools: a few at a time per CA profile."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import make_certificate
from webapp import db
from webapp.models import CAProfile
from webapp.services import slots


def test_a_ca_gets_no_more_slots_than_its_bound_and_waiters_get_freed_ones():
    bound = slots.CaSlots(2)
    assert bound.try_take(1) and bound.try_take(1) and not bound.try_take(1)
    assert bound.try_take(2)  # another CA is not held up
    with pytest.raises(slots.SlotsBusy):
        with bound.held(1, timeout=0.05):
            pass
    threading.Timer(0.05, bound.give, args=(1,)).start()
    with bound.held(1, timeout=5):  # waits for the freed slot
        assert not bound.try_take(1)


def test_per_ca_keeps_each_ca_within_its_limit_and_names_missing_ids(app):
    with app.app_context():
        ids = {}
        for name in ("A", "B"):
            profile = CAProfile(name=name, module="custom", dns_zone="acme.tech.test", email="a@b.test")
            db.session().add(profile)
            db.session().commit()
            ids[name] = profile.id
    certs = {make_certificate(app, ids[name], f"{name.lower()}{i}.test"): name
             for name in ("A", "B") for i in range(4)}
    lock, now, peak = threading.Lock(), {"A": 0, "B": 0}, {"A": 0, "B": 0}

    def work(cert_id):
        ca = certs[cert_id]
        with lock:
            now[ca] += 1
            peak[ca] = max(peak[ca], now[ca])
        time.sleep(0.05)
        with lock:
            now[ca] -= 1
        return "active"
    done = []
    results = slots.per_ca(app, [*certs, 99999], work, limit=2,
                           done=lambda i, status, domains, error: done.append((i, status)))
    assert results[99999] == "missing" and all(results[c] == "active" for c in certs)
    assert peak == {"A": 2, "B": 2} and len(done) == len(certs) + 1
