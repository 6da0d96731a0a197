"""The in-process scheduler (APScheduler 3). Jobs are one-line wrappers that open an app
context and call a service."""
from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask


class Scheduler:
    """One BackgroundScheduler per app."""

    def __init__(self, app: Flask):
        self.app = app
        self._scheduler = BackgroundScheduler(timezone="UTC")

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)

    def state_name(self) -> str:
        return {0: "stopped", 1: "running", 2: "paused"}.get(self._scheduler.state, "unknown")


def start(app: Flask) -> Scheduler:
    """Start the app's scheduler (once)."""
    state = app.extensions["sslmanager"]
    if state.scheduler is None:
        state.scheduler = Scheduler(app)
        state.scheduler.start()
    return state.scheduler
