"""The `sslmanager` console script. Most runs are one-shot (`cert process` in a deploy hook,
`renew` from cron), so start-up is most of their time: the collector stays off while the
imports and the app set-up allocate objects that all live to the end anyway (it comes back
on once the app exists). And `cert process` goes to the running service when there is
one (webapp.control), before any of that."""
from __future__ import annotations

import gc
import sys


def main() -> None:
    gc.disable()
    if sys.argv[1:2] == ["agent"]:
        # start-up: the agent runs on web servers and loads neither Flask nor the app
        from .agent.run import main as agent_main
        sys.exit(agent_main(sys.argv[2:]))
    # start-up: the hand-off path loads neither Flask nor the app
    from .control import hand_off
    code = hand_off(sys.argv[1:])  # `cert process` when a service runs here: no app start-up
    if code is not None:
        sys.exit(code)
    # start-up: the hand-off path loads neither Flask nor the app
    from .console_app import run_commands
    run_commands()
