"""Agents on web servers (`sslmanager agent`): what each token may deliver, the reports the
agents send back, and who serves which certificate.

The listing is the hot path: a thousand agents polling every minute is ~17 requests a second,
nearly all answered 304. So the answer is cached per restriction and checked against the
newest version id (one index lookup), and an agent's last_seen_at is written in one batch
a minute with every other agent's (services.touches), not on every poll."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from .. import db
from ..errors import ValidationError
from ..models import Agent, AgentInstall, Certificate, CertificateVersion, utcnow
from .dashboard import Attention, AttentionItem
from . import touches
from .timeline import Timeline

AGENT_CACHE_MAX = 100000  # (token, name) → agent id, kept per process
# Seconds an agent listing is reused while no new version appeared anywhere (a new version
# drops it at once). Only a change without a new version waits for it: a tag added to a
# certificate issued before, a status change (revoked, expired: an agent keeps its files).
LIST_TTL = 300.0
LIST_CACHE_MAX = 10000    # restrictions kept
NAME_MAX = 100
MESSAGE_MAX = 2000
DELIVERED_STATUSES = ("active", "processing", "failed")  # a current version that still serves
_lock = threading.Lock()
_NEWEST = select(func.max(CertificateVersion.id))


def silent_after() -> timedelta:
    return timedelta(seconds=int(current_app.config["SSLMANAGER_AGENT_SILENT_AFTER"]))


def clean_name(raw: str | None, address: str) -> str:
    """The agent's name as it gave it (printable, at most 100 characters), else its address."""
    name = "".join(ch for ch in (raw or "") if ch.isprintable()).strip()[:NAME_MAX]
    return name or address[:NAME_MAX] or "unnamed"


def _compute(visible: ColumnElement[bool] | None) -> tuple[list[dict], str]:
    c, v = Certificate, CertificateVersion
    latest = (select(func.max(v.id)).where(v.certificate_id == c.id).correlate(c).scalar_subquery())
    query = select(c.id, c.domains, c.status, latest.label("version_id")).where(c.status.in_(DELIVERED_STATUSES))
    if visible is not None:
        query = query.where(visible)
    s = db.session()
    rows = [r for r in s.execute(query.order_by(c.id)) if r.version_id is not None]
    versions = {}
    if rows:
        versions = {r.id: r for r in s.execute(select(v.id, v.number, v.serial, v.not_after)
                                                .where(v.id.in_([r.version_id for r in rows])))}
    items = []
    for r in rows:
        ver = versions[r.version_id]
        items.append({"id": r.id, "domains": list(r.domains), "status": r.status,
                      "version": {"id": ver.id, "number": ver.number, "serial": ver.serial,
                                  "not_after": ver.not_after.isoformat()}})
    etag = '"' + hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:32] + '"'
    return items, etag


def _generation() -> int:
    """The newest version's id (the primary key's maximum: an index lookup), asked on every
    poll: a new version (an issue or a renewal) shows at once, whichever process wrote it."""
    return db.session().scalar(_NEWEST) or 0


def deliverable(visible: Callable[[], ColumnElement[bool] | None],
                restriction: Hashable) -> tuple[list[dict], str]:
    """(certificates with a current version inside `visible()`, ETag). The ETag hashes exactly
    what the answer says. The answer is kept per restriction (every agent of a fleet shares
    one, and each agent's own is still fresh at its next poll): a new version anywhere drops it
    at once; any other change (a status, a tag) shows within LIST_TTL seconds. So a 304 costs one index lookup, and a renewal reaches every
    agent at its next poll."""
    cache = current_app.extensions.setdefault("sslmanager_agents_lists", {})
    generation = _generation()
    now = time.monotonic()
    hit = cache.get(restriction)
    if hit is not None and hit[0] == generation and now - hit[1] < LIST_TTL:
        return [dict(item) for item in hit[2]], hit[3]
    items, etag = _compute(visible())
    if len(cache) > LIST_CACHE_MAX:  # many distinct restrictions: start over rather than grow
        cache.clear()
    cache[restriction] = (generation, now, [dict(item) for item in items], etag)
    return items, etag


def _cache() -> dict:
    # Per app: each app (and each test's app) has its own database.
    return current_app.extensions.setdefault("sslmanager_agents_seen", {})


def seen(token_id: int, name: str, address: str) -> int:
    """Record that an agent polled; returns its id. A new agent's row is written at once; after
    that its last_seen_at goes through services.touches (one batched write a minute)."""
    key = (token_id, name)
    cache = _cache()
    agent_id = cache.get(key)
    if agent_id is not None:
        touches.touch(Agent, agent_id, last_seen_at=utcnow(), address=address[:64])
        return agent_id
    s = db.session()
    agent = s.scalar(select(Agent).where(Agent.token_id == token_id, Agent.name == name))
    if agent is None:
        agent = Agent(token_id=token_id, name=name, address=address[:64], last_seen_at=utcnow())
        s.add(agent)
        try:
            s.commit()
        except IntegrityError:  # the same agent's other request (another thread) made it first
            s.rollback()
            agent = s.scalar(select(Agent).where(Agent.token_id == token_id, Agent.name == name))
    else:
        agent.last_seen_at, agent.address = utcnow(), address[:64]
        s.commit()
    with _lock:
        if len(cache) > AGENT_CACHE_MAX:
            cache.clear()
        cache[key] = agent.id
    return agent.id


def record_report(agent_id: int, cert: Certificate, data: dict) -> AgentInstall:
    """An agent's report on one certificate: {version_id, serial, ok, message}. A change of
    outcome (a new serial, a first failure, a recovery) goes to the certificate's timeline;
    the same failure reported every minute does not."""
    errors = {}
    serial = str(data.get("serial", "")).strip().lower()
    if not serial or len(serial) > 64 or any(ch not in "0123456789abcdef" for ch in serial):
        errors["serial"] = "The installed certificate's serial in hex, e.g. 3a9f01."
    if not isinstance(data.get("ok"), bool):
        errors["ok"] = "true when the files were written (and the reload and probe passed), else false."
    version_id = data.get("version_id")
    if version_id is not None and (not isinstance(version_id, int) or isinstance(version_id, bool)):
        errors["version_id"] = "The version's id (a whole number), as the listing gave it."
    message = data.get("message", "")
    if not isinstance(message, str):
        errors["message"] = "A text."
    if errors:
        raise ValidationError(errors)
    s = db.session()
    row = s.scalar(select(AgentInstall).where(AgentInstall.agent_id == agent_id,
                                              AgentInstall.certificate_id == cert.id))
    if row is None:
        row = AgentInstall(agent_id=agent_id, certificate_id=cert.id, installed_serial="", last_serial="",
                           last_ok=False, last_message="")
        s.add(row)
    changed = (row.last_serial, row.last_ok) != (serial, data["ok"])
    row.last_serial, row.last_ok, row.last_message = serial, data["ok"], message[:MESSAGE_MAX]
    row.last_at = utcnow()
    if data["ok"]:
        row.installed_serial, row.installed_version_id = serial, version_id
    agent = s.get(Agent, agent_id)
    agent.last_seen_at = utcnow()
    if changed:
        what = f"installed serial {serial}" if data["ok"] else f"FAILED to install serial {serial}"
        Timeline(cert)(f"agent {agent.name}: {what}: {message[:300]}", "info" if data["ok"] else "error")
    s.commit()
    return row


@dataclass
class Serving:
    """One agent serving one certificate, as the certificate page shows it."""

    agent: str
    address: str
    last_seen: datetime
    installed_serial: str
    last_ok: bool
    last_message: str
    last_at: datetime
    behind: bool   # not the certificate's current serial
    silent: bool   # no poll for SSLMANAGER_AGENT_SILENT_AFTER


def for_certificate(cert: Certificate, now: datetime | None = None) -> list[Serving]:
    now = now or utcnow()
    quiet = now - silent_after()
    rows = db.session().execute(select(Agent, AgentInstall).join(AgentInstall, AgentInstall.agent_id == Agent.id)
                                .where(AgentInstall.certificate_id == cert.id).order_by(Agent.name))
    return [Serving(a.name, a.address, a.last_seen_at, i.installed_serial, i.last_ok, i.last_message, i.last_at,
                    behind=i.installed_serial != cert.serial, silent=a.last_seen_at < quiet) for a, i in rows]


def attention(now: datetime | None = None, limit: int = 10) -> list[Attention]:
    """The dashboard's two agent categories: agents serving an old version of a certificate
    that still serves, and agents silent for longer than SSLMANAGER_AGENT_SILENT_AFTER."""
    now = now or utcnow()
    c, a, i = Certificate, Agent, AgentInstall
    s = db.session()
    behind = (i.installed_serial != c.serial) & c.status.in_(DELIVERED_STATUSES)
    quiet = a.last_seen_at < now - silent_after()
    groups = []
    for key, title, help_, cond in (
            ("agents-behind", "Agents serving an old version",
             "The agent has not installed the current version: see its last result on the certificate page.", behind),
            ("agents-silent", "Agents silent",
             "No poll from the agent for longer than SSLMANAGER_AGENT_SILENT_AFTER: is it running, and can it reach "
             "SSL Manager?", quiet)):
        base = select(c.id, c.common_name, a.name, a.last_seen_at, i.installed_serial, i.last_ok, i.last_message).select_from(i)\
            .join(a, a.id == i.agent_id).join(c, c.id == i.certificate_id).where(cond)
        count = s.scalar(select(func.count()).select_from(base.subquery())) or 0
        group = Attention(key, title, help_, count)
        for r in s.execute(base.order_by(a.last_seen_at, c.id).limit(limit)) if count else ():
            detail = (f"{r.name}: last seen {_ago(now - r.last_seen_at)} ago" if key == "agents-silent" else
                      f"{r.name} serves {r.installed_serial or 'nothing yet'}"
                      + ("" if r.last_ok else f"; last attempt failed: {r.last_message[:120]}"))
            group.items.append(AttentionItem(r.id, r.common_name, detail, r.last_seen_at))
        groups.append(group)
    return groups


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
