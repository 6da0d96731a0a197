"""The landing page: counts by status, what needs attention, the expiry timeline, the scheduler
and failing CA profiles. Thin over services.dashboard; the chart's geometry is computed here."""
from __future__ import annotations

import math

from flask import Blueprint, current_app, render_template

from ..models import utcnow
from ..services import agents, certificates
from ..services import dashboard as service
from .certificates import STATUS_LABELS
from .dns import age_text

bp = Blueprint("dashboard", __name__)

# The SVG's coordinate system (it scales to the page width through its viewBox).
CHART_W, CHART_H = 700, 236
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 40, 10, 18, 168


@bp.route("/")
def index():
    now = utcnow()
    figures = service.overview(now)
    scheduler = service.scheduler_info(now, current_app.extensions["sslmanager"])
    return render_template(
        "sslmanager/dashboard/index.html",
        counts=figures.counts, total=figures.total, statuses=certificates.STATUSES,
        status_labels=STATUS_LABELS, attention=figures.attention + agents.attention(now),
        weeks=figures.weeks, chart=chart(figures.weeks, figures.bucket, figures.span_days), scheduler=scheduler,
        scheduler_age=age_text(now - scheduler.last_run) if scheduler.last_run else None,
        profiles=service.profile_count(), failing_profiles=service.failing_profiles(),
        failing_zones=service.failing_zones())


def _nice_ceiling(value: int) -> int:
    """The axis maximum: 1, 2, 5 times a power of ten, at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def chart(weeks: list[service.Week], bucket: str = "week", span: int = service.TIMELINE_DAYS) -> dict:
    """Bars (expiring per week, or per day for a short-lived fleet), renewal markers and axis
    ticks in SVG coordinates."""
    top = _nice_ceiling(max([w.expiring for w in weeks] + [0]))
    height = PLOT_BOTTOM - PLOT_TOP
    slot = (CHART_W - PLOT_LEFT - PLOT_RIGHT) / max(len(weeks), 1)
    bar_w = slot * 0.6
    columns = []
    for i, week in enumerate(weeks):
        x = PLOT_LEFT + i * slot
        h = height * week.expiring / top
        columns.append({
            "week": week, "x": round(x + (slot - bar_w) / 2, 1), "w": round(bar_w, 1),
            "y": round(PLOT_BOTTOM - h, 1), "h": round(h, 1), "cx": round(x + slot / 2, 1),
            # Every other week is labelled; on a phone every fourth (the CSS hides the minor ones).
            "label": f"{week.start:%b} {week.start.day}", "show_label": i % 2 == 0, "minor": i % 4 != 0,
        })
    ticks = [{"value": v, "y": round(PLOT_BOTTOM - height * v / top, 1)}
             for v in sorted({0, top // 2, top})]
    return {"width": CHART_W, "height": CHART_H, "left": PLOT_LEFT, "right": CHART_W - PLOT_RIGHT,
            "top": PLOT_TOP, "bottom": PLOT_BOTTOM, "columns": columns, "ticks": ticks,
            "label_y": PLOT_BOTTOM + 22, "marker_y": PLOT_BOTTOM + 50,
            "middle_x": (PLOT_LEFT + CHART_W - PLOT_RIGHT) / 2, "middle_y": (PLOT_TOP + PLOT_BOTTOM) / 2,
            "expiring": sum(w.expiring for w in weeks), "renewals": sum(w.renewals for w in weeks),
            "busiest": max(weeks, key=lambda w: w.expiring) if weeks else None,
            "bucket": bucket, "span": span}
