"""The `sslmanager` console script. Most runs are one-shot (`cert process` in a deploy hook,
`renew` from cron), so start-up is most of their time: the collector stays off while the
imports and the app set-up allocate objects that all live to the end anyway (webapp.cli turns
it back on once the app exists)."""
from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from .cli import main as run
    run()
