"""Copy the pinned front-end files (package.json) from node_modules into webapp/static/vendor,
running `npm ci` first when they are missing. Used by ./dev and by the wheel build."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {  # node_modules path -> name served under static/vendor/
    "htmx.org/dist/htmx.min.js": "htmx.min.js",
    "@picocss/pico/css/pico.min.css": "pico.min.css",
}


def vendor(force: bool = False) -> None:
    target = os.path.join(ROOT, "webapp", "static", "vendor")
    if not force and all(os.path.exists(os.path.join(target, n)) for n in FILES.values()):
        return
    modules = os.path.join(ROOT, "node_modules")
    if not all(os.path.exists(os.path.join(modules, p)) for p in FILES):
        if shutil.which("npm") is None:
            sys.exit("npm is needed to fetch htmx and Pico CSS (Debian: apt-get install npm).")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=ROOT, check=True)
    os.makedirs(target, exist_ok=True)
    for path, name in FILES.items():
        shutil.copyfile(os.path.join(modules, path), os.path.join(target, name))


if __name__ == "__main__":
    vendor(force="--force" in sys.argv)
