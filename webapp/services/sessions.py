"""Signed-in browsers, one row each: what the account page lists and what a user (or an admin)
revokes. The cookie holds a random token; the row only its SHA-256, so the database never holds
anything that signs a browser in. A row also remembers the role it was issued under: when the
user's role changes the next request gets a fresh token (rotation), and the old one is dead."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select

from .. import db
from ..errors import NotFound
from ..models import Admin, UserSession

USER_AGENT_MAX = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _limits(at: datetime) -> tuple[datetime, datetime]:
    """(oldest sign-in, oldest last page) a live session may have at `at`."""
    cfg = current_app.config
    return (at - timedelta(hours=cfg["SSLMANAGER_SESSION_MAX_HOURS"]),
            at - timedelta(minutes=cfg["SSLMANAGER_SESSION_IDLE_MINUTES"]))


def purge(user: Admin, at: datetime) -> None:
    """Delete the user's sessions past either timeout (the list shows live ones only)."""
    started, seen = _limits(at)
    db.session().execute(delete(UserSession).where(
        UserSession.user_id == user.id,
        or_(UserSession.created_at < started, UserSession.last_seen_at < seen)))


def open_session(user: Admin, address: str, user_agent: str, at: datetime) -> str:
    """A new session row for `user`; the token for the cookie. The caller commits."""
    purge(user, at)
    token = secrets.token_urlsafe(32)
    db.session().add(UserSession(user_id=user.id, token_hash=token_hash(token), role=user.role,
                                 address=address[:64], user_agent=user_agent[:USER_AGENT_MAX],
                                 created_at=at, last_seen_at=at))
    return token


def find(user_id: int, token: object) -> UserSession | None:
    """The session row behind a cookie's token, if it still exists."""
    if not isinstance(token, str) or not token:
        return None
    row = db.session().execute(select(UserSession).filter_by(token_hash=token_hash(token))).scalar_one_or_none()
    return row if row is not None and row.user_id == user_id else None


def rotate(row: UserSession, role: str) -> str:
    """A fresh token for the same session (the old one stops working), under `role`."""
    token = secrets.token_urlsafe(32)
    row.token_hash, row.role = token_hash(token), role
    return token


def live(user: Admin, at: datetime) -> list[UserSession]:
    """The user's sessions within both timeouts, newest first."""
    started, seen = _limits(at)
    return list(db.session().scalars(
        select(UserSession).where(UserSession.user_id == user.id, UserSession.created_at >= started,
                                  UserSession.last_seen_at >= seen)
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())))


def revoke(user: Admin, session_id: int) -> UserSession:
    """End one of `user`'s sessions (the caller commits)."""
    row = db.session().get(UserSession, session_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"No session #{session_id} for {user.username!r}.")
    db.session().delete(row)
    return row


def revoke_all(user: Admin, keep: str | None = None) -> None:
    """End every session of `user`, but the one with token `keep` (the caller commits)."""
    stmt = delete(UserSession).where(UserSession.user_id == user.id)
    if keep:
        stmt = stmt.where(UserSession.token_hash != token_hash(keep))
    db.session().execute(stmt)
