""""Last seen" and "last used" timestamps of things that poll, written in batches: a thousand
agents polling each minute would otherwise cost a commit every few polls. A touch lands in a
per-process buffer, and the buffer goes to the database in one transaction (an UPDATE by
primary key per row, executemany) at most every FLUSH_EVERY seconds, on the next touch after
that. What a process had not flushed when it stopped is lost: a minute of "last seen"."""
from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app
from sqlalchemy import update

from .. import db

FLUSH_EVERY = 60.0
_lock = threading.Lock()


def touch(model: Any, row_id: int, **values: Any) -> None:
    """Set these columns of the row with this id, soon (the latest values win)."""
    buf = current_app.extensions.setdefault("sslmanager_touches", {"rows": {}, "flushed": time.monotonic()})
    with _lock:
        buf["rows"][(model, row_id)] = values
        if time.monotonic() - buf["flushed"] < FLUSH_EVERY:
            return
        rows, buf["rows"], buf["flushed"] = buf["rows"], {}, time.monotonic()
    flush(rows)


def flush(rows: dict | None = None) -> int:
    """Write the buffered rows (or `rows`) now, in one transaction; returns how many."""
    if rows is None:
        buf = current_app.extensions.get("sslmanager_touches")
        if not buf:
            return 0
        with _lock:
            rows, buf["rows"], buf["flushed"] = buf["rows"], {}, time.monotonic()
    by_model: dict[Any, list[dict]] = {}
    for (model, row_id), values in rows.items():
        by_model.setdefault(model, []).append({"id": row_id, **values})
    s = db.session()
    for model, params in by_model.items():
        s.execute(update(model), params)  # ORM bulk UPDATE by primary key
    s.commit()
    return len(rows)
