"""What every model shares: SSL Manager's own DeclarativeBase (so a host app's Flask-SQLAlchemy
instance and ours never collide), the naming convention, and the column types for UTC times and
secrets."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import current_app
from sqlalchemy import DateTime, MetaData, Text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

BIND_KEY = "sslmanager"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores UTC; always returns aware datetimes (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Encrypted(TypeDecorator):
    """A secret: encrypted with the app's data key on the way in, decrypted on the way out."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None or value == "":
            return None
        return current_app.extensions["sslmanager"].keyring.encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return current_app.extensions["sslmanager"].keyring.decrypt(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING, info={"bind_key": BIND_KEY})


# Tables whose ids are seen outside the database (deploy hooks, exports, metrics, the audit log,
# URLs): on SQLite a deleted row's id would otherwise go to the next row (migration 0007).
# PostgreSQL's sequences never reuse a number anyway.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def encrypted_columns() -> list[tuple[type[Base], str]]:
    """Every (model, attribute) holding a secret: what key rotation must rewrite. Complete
    because the package's __init__ imports every model module before anyone can call this."""
    found = []
    for mapper in Base.registry.mappers:
        for column in mapper.columns:
            if isinstance(column.type, Encrypted):
                found.append((mapper.class_, column.key))
    return found
