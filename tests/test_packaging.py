"""`pip install .` gives a wheel a panel can embed: templates, front-end files, migrations."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_templates_front_end_files_and_migrations(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300, env={**os.environ, "PIP_NO_INPUT": "1"})
    wheel = next(tmp_path.glob("sslmanager-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("webapp/templates/sslmanager/base.html", "webapp/templates/sslmanager/ca_profiles/_form.html",
                     "webapp/static/vendor/htmx.min.js", "webapp/static/vendor/pico.min.css",
                     "webapp/static/vendor/pico.scoped.min.css",
                     "webapp/static/app.js", "webapp/migrations/env.py",
                     "webapp/migrations/versions/0001_initial.py", "webapp/ca_plugins/zerossl.py"):
        assert expected in names, expected
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "sslmanager = webapp.console:main" in entry_points
