"""A certificate's timeline: one line per step, saved with the next commit (and logged)."""
from __future__ import annotations

import logging
import time

from .. import db
from ..models import Certificate, TimelineEvent

log = logging.getLogger("sslmanager.issuance")


class Timeline:
    """Lines for the certificate's timeline; saved with the next commit."""

    def __init__(self, cert: Certificate):
        self.cert = cert
        self.started = time.monotonic()

    def __call__(self, line: str, level: str = "info") -> None:
        log.info("certificate %s: %s", self.cert.id, line)
        db.session().add(TimelineEvent(certificate_id=self.cert.id, message=line, level=level))
