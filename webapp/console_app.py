"""The `sslmanager` console script once it needs the app: the command group over every
command of webapp.cli, on an app built without its pages (`run` adds them)."""
from __future__ import annotations

import atexit
import gc

from flask.cli import FlaskGroup

from .cli import commands, fail
from .errors import SSLManagerError
from .extension import create_app


def run_commands() -> None:
    """The `sslmanager` command group: every command the cli package registers."""
    group = FlaskGroup(create_app=_create_app, add_default_commands=False,
                       add_version_option=False, load_dotenv=False,
                       help="SSL Manager: CA profiles, certificates and renewals.")
    for cmd in commands:
        group.add_command(cmd)
    # Skip the collector's full sweep at exit: a one-shot command (cert process) otherwise
    # spends a third of a second tearing down objects the OS frees anyway.
    atexit.register(gc.freeze)
    try:
        group.main(prog_name="sslmanager")
    except SSLManagerError as exc:
        fail(exc)


def _create_app():
    """The app without its pages (`run` adds them): a command needs the database, not routes.
    The collector, off since webapp.console started, comes back once start-up is over; what
    start-up made lives as long as the process, so it is frozen out of later collections."""
    app = create_app(web=False)
    gc.freeze()
    gc.enable()
    return app
