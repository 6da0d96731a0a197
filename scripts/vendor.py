"""Copy the pinned front-end files (package.json) from node_modules into webapp/static/vendor,
running `npm ci` first when they are missing, and derive Pico scoped under our root element.
Used by ./dev and by the wheel build. `--test` also copies the test-only files (axe-core, a
devDependency the app never serves) into tests/browser/vendor, and makes sure the test-only
packages used in place (oidc-provider, the lab's OpenID Provider) are in node_modules."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {  # node_modules path -> name served under static/vendor/
    "htmx.org/dist/htmx.min.js": "htmx.min.js",
    "@picocss/pico/css/pico.min.css": "pico.min.css",
}
# Pages rendered inside a host panel's layout use this one: every Pico rule applies under
# .sslm only, so the host's body, nav and headings keep their looks. Pico's own
# pico.conditional.css still styles :root, body, nav items and form controls page-wide.
# Test-only (devDependencies): node_modules path -> name under tests/browser/vendor/, never
# under static/, so neither the app nor the wheel carries them.
TEST_FILES = {"axe-core/axe.min.js": "axe.min.js"}
# Test-only packages used where they lie (the lab's OpenID Provider, tests/lab/oidc.py).
TEST_PACKAGES = {"oidc-provider/package.json": ""}
TEST_TARGET = os.path.join(ROOT, "tests", "browser", "vendor")
SCOPED = {"pico.min.css": ("pico.scoped.min.css", ".sslm")}

# A selector that names the document root (or body) becomes the scope root itself.
_ROOT_START = re.compile(r"^(?::where\(:(?:root|host)\)|:host\(([^()]*(?:\([^()]*\)[^()]*)*)\)|:root|:host|html|body)")
_RAW_AT_RULES = ("@keyframes", "@-webkit-keyframes", "@font-face", "@page", "@property", "@counter-style")


def vendor(force: bool = False) -> None:
    target = os.path.join(ROOT, "webapp", "static", "vendor")
    wanted = [*FILES.values(), *(name for name, _ in SCOPED.values())]
    if not force and all(os.path.exists(os.path.join(target, n)) for n in wanted):
        return
    modules = _node_modules(FILES)
    os.makedirs(target, exist_ok=True)
    for path, name in FILES.items():
        shutil.copyfile(os.path.join(modules, path), os.path.join(target, name))
    for source, (name, root) in SCOPED.items():
        with open(os.path.join(target, source), encoding="utf-8") as fh:
            css = fh.read()
        with open(os.path.join(target, name), "w", encoding="utf-8") as fh:
            fh.write(scope_css(css, root))


def vendor_test(force: bool = False) -> str:
    """Copy the test-only files into tests/browser/vendor; returns that folder."""
    _node_modules(TEST_PACKAGES)
    if force or not all(os.path.exists(os.path.join(TEST_TARGET, n)) for n in TEST_FILES.values()):
        modules = _node_modules(TEST_FILES)
        os.makedirs(TEST_TARGET, exist_ok=True)
        for path, name in TEST_FILES.items():
            shutil.copyfile(os.path.join(modules, path), os.path.join(TEST_TARGET, name))
    return TEST_TARGET


def _node_modules(files: dict[str, str]) -> str:
    """node_modules, after `npm ci` when any of `files` is missing from it (package-lock.json
    moved on, or a fresh checkout)."""
    modules = os.path.join(ROOT, "node_modules")
    if not all(os.path.exists(os.path.join(modules, p)) for p in files):
        if shutil.which("npm") is None:
            sys.exit("npm is needed to fetch the pinned front-end files (Debian: apt-get install npm).")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=ROOT, check=True)
    return modules


def scope_css(css: str, root: str) -> str:
    """Every style rule of `css` applied under `root` only (`:root`, `html` and `body` become
    `root`); at-rules keep their place, keyframes and font faces are copied as they are."""
    out: list[str] = []
    i, n = 0, len(css)
    while i < n:
        if css.startswith("/*", i):
            end = css.find("*/", i + 2)
            end = n if end < 0 else end + 2
            if css.startswith("/*!", i):  # the licence notice stays with the code
                out.append(css[i:end])
            i = end
            continue
        if css[i].isspace():
            i += 1
            continue
        head_end = _scan(css, i, "{;")
        head = css[i:head_end].strip()
        if head_end >= n or css[head_end] == ";":  # @charset, @import, or a stray ';'
            out.append(css[i:head_end + 1])
            i = head_end + 1
            continue
        body_end = _block_end(css, head_end)
        body = css[head_end + 1:body_end]
        if head.startswith("@"):
            nested = not head.lower().startswith(_RAW_AT_RULES)
            out.append(head + "{" + (scope_css(body, root) if nested else body) + "}")
        else:
            scoped = dict.fromkeys(_scope_selector(s, root) for s in _split_selectors(head))
            out.append(",".join(scoped) + "{" + body + "}")  # ':host,:root' is one root now
        i = body_end + 1
    return "".join(out)


def _scope_selector(selector: str, root: str) -> str:
    selector = selector.strip()
    match = _ROOT_START.match(selector)
    if not match:  # :where() keeps Pico's own specificity, so app.css overrides it as standalone
        return f":where({root}) {selector}"
    if match.group(0).startswith(":where("):
        return f":where({root})" + selector[match.end():]
    return root + (match.group(1) or "") + selector[match.end():]


def _split_selectors(head: str) -> list[str]:
    parts, depth, start, quote = [], 0, 0, ""
    for k, ch in enumerate(head):
        if quote:
            quote = "" if ch == quote and head[k - 1] != "\\" else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(head[start:k])
            start = k + 1
    return [*parts, head[start:]]


def _scan(css: str, i: int, stops: str) -> int:
    """Index of the first of `stops` at i or after, outside strings and comments."""
    quote = ""
    while i < len(css):
        ch = css[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif css.startswith("/*", i):
            i = css.find("*/", i + 2) + 1 or len(css)
        elif ch in stops:
            return i
        i += 1
    return len(css)


def _block_end(css: str, open_at: int) -> int:
    """Index of the '}' closing the block opened at `open_at`."""
    depth, i = 0, open_at
    while i < len(css):
        i = _scan(css, i, "{}")
        if i >= len(css):
            break
        depth += 1 if css[i] == "{" else -1
        if depth == 0:
            return i
        i += 1
    raise ValueError(f"unbalanced braces after offset {open_at}")


if __name__ == "__main__":
    vendor(force="--force" in sys.argv)
    if "--test" in sys.argv:
        vendor_test(force="--force" in sys.argv)
