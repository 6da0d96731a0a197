"""Our flash messages, apart from the host's. Inside a host's layout both render flashes on the
same page; with one shared list each message would show twice (and the host's ours), so ours live
under their own session key. SSLMANAGER_FLASHES = "host" hands them to Flask's flash() instead,
for a host whose layout shows every message in one place."""
from __future__ import annotations

from flask import current_app, g, get_flashed_messages, session
from flask import flash as flask_flash

SESSION_KEY = "sslmanager_flashes"


def flash(message: str, category: str = "info") -> None:
    """Show `message` on the next page ("info" or "error")."""
    if current_app.config.get("SSLMANAGER_FLASHES") == "host":
        flask_flash(message, category)
        return
    session[SESSION_KEY] = [*session.get(SESSION_KEY, []), [category, message]]


def pop() -> list[tuple[str, str]]:
    """The messages to show on this page, once (the same list if asked again in one request).
    Standalone we are the host too, so Flask's own flashes are shown as well."""
    ours = g.setdefault("sslmanager", {})  # everything of ours on g sits under one key
    if "flashes" not in ours:
        shown = [(category, message) for category, message in session.pop(SESSION_KEY, [])]
        if current_app.extensions["sslmanager"].standalone:
            shown = list(get_flashed_messages(with_categories=True)) + shown
        ours["flashes"] = shown
    return ours["flashes"]
