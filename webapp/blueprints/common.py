"""What the feature blueprints share with the umbrella blueprint, in a module of its own so
that they never import the package that imports them."""
from __future__ import annotations

from flask_htmx import HTMX

htmx = HTMX()  # a request helper only (reads HX-* headers); never replaces the host's request class
