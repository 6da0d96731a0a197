"""The host panel of tests/embedding/host.py in Chromium: on our pages its layout's inline script
runs, its inline style applies, its navigation looks as on its own pages, and htmx runs with
our configuration; no CSP report, no script error."""
from __future__ import annotations

import threading

import pytest

from tests.browser.conftest import CHROMIUM_ARGS, CSP_WATCH, DESKTOP  # noqa: F401  (one setup)
from tests.embedding.conftest import make_host

NAV_STYLE = """() => { const s = getComputedStyle(document.querySelector("nav.host-nav"));
  const b = getComputedStyle(document.body);
  return [s.backgroundColor, s.fontFamily, s.padding, s.display, b.margin, b.fontFamily, b.backgroundColor]; }"""


@pytest.fixture
def host_url(tmp_path):
    from waitress.server import create_server
    app = make_host(tmp_path)
    server = create_server(app, host="127.0.0.1", port=0, threads=4, ident="hostpanel-test")
    thread = threading.Thread(target=server.run, name="waitress-host", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)


@pytest.fixture
def host_page(browser, host_url, console):
    context = browser.new_context(base_url=host_url, viewport=DESKTOP)
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    console.watch(page)
    yield page
    context.close()
    console.assert_clean()


def test_our_pages_keep_the_host_layouts_script_style_and_looks(host_page):
    page = host_page
    page.goto("/panel/ssl/ca/")  # anonymous: the host's Flask-Login sends us to its sign-in page
    assert page.url.endswith("/login?next=%2Fpanel%2Fssl%2Fca%2F")
    page.fill("input[name=email]", "admin@example.net")
    page.click("text=Sign in")
    page.wait_for_url("**/panel/ssl/ca/")
    assert page.get_by_role("heading", name="Certificate Authorities", level=1).is_visible()
    ours = page.evaluate(NAV_STYLE)
    assert page.evaluate("document.documentElement.dataset.hostScript") == "ran"
    assert ours[0] == "rgb(10, 20, 30)"  # the host's inline style
    assert page.evaluate("htmx.config.allowEval") is False  # our htmx configuration
    page.goto("/sites")
    assert page.evaluate(NAV_STYLE) == ours  # the host's nav and body look the same on our pages
