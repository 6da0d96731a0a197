"""Settings → SSL Manager → Certificate Authorities."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ca_profiles", __name__, url_prefix="/ca")
