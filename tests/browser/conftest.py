"""Browser tests: the standalone app served by waitress on a free loopback port in a thread,
with its in-process scheduler, against the real lab (Pebble, BIND, Unbound); Debian's Chromium
driven by Playwright. Every page watches for CSP violations and script errors."""
from __future__ import annotations

import functools
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import ADMIN, add_lab_zone

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"      # every screenshot (git-ignored)
DOCS = ROOT / "docs" / "screenshots"                      # the README's, refreshed on request
UPDATE_DOCS = os.environ.get("SSLMANAGER_UPDATE_SCREENSHOTS") == "1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}

# Runs before any page script (through the DevTools protocol, so the CSP does not apply to it):
# every violation the page reports becomes a console error the test collects.
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                + " at " + e.sourceFile + ":" + e.lineNumber);
}, true);
"""


@dataclass
class LiveServer:
    app: Flask
    url: str
    bind: object  # tests.lab.servers.Bind: the test plays the domain owner's DNS host


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, lab_bind, lab_unbound, lab_pebble):
    """The app on http://127.0.0.1:<free port>, scheduler running, technical zone on BIND."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from waitress.server import create_server

    from webapp import create_app, db
    from webapp.services import scheduler
    from webapp.services.auth import create_admin

    instance = tmp_path_factory.mktemp("browser-app") / "instance"
    app = create_app({
        "SSLMANAGER_INSTANCE_PATH": str(instance),
        "SSLMANAGER_SCHEDULER_ENABLED": False,            # started below, with a short tick
        "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True,       # Pebble listens on loopback
        "SSLMANAGER_DNS_RESOLVERS": [f"127.0.0.1:{lab_unbound.port}"],
        "SSLMANAGER_CNAME_POLL_INTERVAL": 1,
    })
    with app.app_context():
        db.upgrade()
        create_admin(*ADMIN)
        add_lab_zone(lab_bind)
        db.session().remove()

    server = create_server(app, host="127.0.0.1", port=0, threads=8, ident="sslmanager-test")
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()

    patch = pytest.MonkeyPatch()
    patch.setattr(scheduler, "TICK_SECONDS", 1)  # Pending certificates move within a second or two
    sched = scheduler.start(app)
    try:
        yield LiveServer(app=app, url=f"http://127.0.0.1:{server.effective_port}", bind=lab_bind)
    finally:
        sched.shutdown()
        patch.undo()
        server.close()
        thread.join(timeout=5)
        with app.app_context():
            db.session().remove()
            app.extensions["sslmanager"].engine.dispose()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """What the pages said: CSP violations and uncaught script errors, per page URL."""

    def __init__(self):
        self.csp: list[str] = []
        self.errors: list[str] = []

    def watch(self, page) -> None:
        def on_console(message):
            if "Content Security Policy" in message.text or message.text.startswith("CSP violation"):
                self.csp.append(f"{page.url}: {message.text}")
        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))

    def assert_clean(self) -> None:
        assert not self.csp, "CSP violations:\n" + "\n".join(self.csp)
        assert not self.errors, "script errors:\n" + "\n".join(self.errors)


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def new_page(browser, live_server, console):
    """new_page(viewport=DESKTOP) -> a page in a fresh context (own cookies), watched; every
    context is closed and the console checked at the end of the test."""
    contexts = []

    def make(viewport=DESKTOP):
        context = browser.new_context(base_url=live_server.url, viewport=viewport, accept_downloads=True)
        context.set_default_timeout(10_000)
        context.add_init_script(CSP_WATCH)
        contexts.append(context)
        page = context.new_page()
        console.watch(page)
        return page
    yield make
    for context in contexts:
        context.close()
    console.assert_clean()


@pytest.fixture
def page(new_page):
    return new_page()


# axe-core's impacts that fail a test; "minor" and "moderate" ones are left to review.
AXE_FAILING = ("serious", "critical")


@functools.cache
def axe_source() -> str:
    """axe.min.js, pinned in package.json's devDependencies (copied by scripts/vendor.py --test)."""
    import importlib
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        folder = importlib.import_module("vendor").vendor_test()
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return (Path(folder) / "axe.min.js").read_text(encoding="utf-8")


def assert_accessible(page, label: str) -> None:
    """Run axe-core over the page as it is now; fail on any serious or critical violation.
    page.evaluate goes through the DevTools protocol, so the CSP (no inline scripts) allows it."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    violations = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    bad = [v for v in violations if v["impact"] in AXE_FAILING]
    lines = []
    for v in bad:
        targets = ", ".join(" ".join(map(str, node["target"])) for node in v["nodes"][:3])
        more = f" (+{len(v['nodes']) - 3} more)" if len(v["nodes"]) > 3 else ""
        lines.append(f"  [{v['impact']}] {v['id']}: {v['help']} at {targets}{more}")
    assert not bad, f"axe-core, {label} ({page.url}):\n" + "\n".join(lines)
    low = page.evaluate(REVIEW_CONTRAST)
    assert not low, f"contrast axe left for review, {label} ({page.url}):\n" + "\n".join(low)


# axe leaves colour contrast "for review" where it cannot find the background (a field whose
# background image is Pico's select chevron or invalid-field icon) or the field is empty; the
# icon sits beside the text, never under it. Review those here: the text colour against the
# nearest opaque background colour, WCAG's ratio, 4.5:1 (3:1 for large text).
REVIEW_CONTRAST = """axe.run(document, {runOnly: ['color-contrast'], resultTypes: ['incomplete']}).then(r => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] === 1) return c.slice(0, 3); } return [255, 255, 255]; };
  const low = [];
  for (const item of r.incomplete) for (const node of item.nodes) {
    const el = document.querySelector(node.target[0]);
    if (!el) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(bg(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && +style.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5)) low.push(`  ${node.target[0]}: ${ratio.toFixed(2)}:1 (${style.color} on ${bg(el)})`);
  }
  return low;
})"""


def sign_in(page) -> None:
    """The login form, as a user fills it."""
    from playwright.sync_api import expect
    page.goto("/login")
    page.get_by_label("Username").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


# The ones the README shows; the rest stay test artefacts.
README_SHOTS = {"dashboard", "ca-save-and-test", "certificate-cname", "certificate-active", "audit-log",
                "ca-test-failed", "phone-dashboard", "phone-certificate-active"}


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Save test-artifacts/screenshots/<name>.png; with SSLMANAGER_UPDATE_SCREENSHOTS=1 the
    README's ones are copied into docs/screenshots/ too."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # caret="initial": hiding the caret leaves style="" on inputs, which htmx then copies (a CSP report)
    page.screenshot(path=str(path), full_page=full_page, caret="initial")
    if UPDATE_DOCS and name in README_SHOTS:
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)
    return path
