"""Secrets at rest: re-encryption under a new data key."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from .. import db
from ..crypto import Keyring
from ..models import encrypted_columns


def rotate(new_keyring: Keyring) -> int:
    """Rewrite every encrypted column with `new_keyring`'s primary key, in one transaction."""
    state = current_app.extensions["sslmanager"]
    old = state.keyring
    state.keyring = new_keyring  # decrypts old values (it holds the old key), encrypts new ones
    s = db.session()
    count = 0
    try:
        for model, attr in encrypted_columns():
            for obj in s.execute(select(model)).scalars():
                if getattr(obj, attr) is not None:
                    flag_modified(obj, attr)
                    count += 1
        s.commit()
    except Exception:
        s.rollback()
        state.keyring = old
        raise
    state.keyring = Keyring(new_keyring.primary)
    return count
