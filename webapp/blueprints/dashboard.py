"""The landing page."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from .. import db
from ..models import CAProfile

bp = Blueprint("dashboard", __name__)


@bp.route("/")
def index():
    s = db.session()
    profiles = s.scalar(select(func.count()).select_from(CAProfile))
    failing = s.execute(select(CAProfile).where(CAProfile.last_test_ok.is_(False))
                        .order_by(CAProfile.name)).scalars().all()
    return render_template("sslmanager/dashboard/index.html", profiles=profiles,
                           failing_profiles=failing)
