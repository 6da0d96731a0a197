"""Items 2 and 5: our pages inside the host's layout leave its page policy, looks and flash
messages to it; the host's own pages are never touched."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from webapp.blueprints import CSP

from .conftest import csrf_token, make_host, sign_in

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "webapp" / "static"
HTMX_CONFIG = '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false, "allowEval": false}\'>'


def test_by_default_our_pages_add_no_policy_that_would_block_the_host_layouts_inline_code(host):
    client = sign_in(host.test_client())
    resp = client.get("/panel/ssl/ca/")
    html = resp.get_data(as_text=True)
    assert "<script>document.documentElement.dataset.hostScript" in html and "<style>nav.host-nav" in html
    assert "Content-Security-Policy" not in resp.headers and "X-Frame-Options" not in resp.headers
    assert resp.headers["X-Content-Type-Options"] == "nosniff"  # harmless to any layout: kept


def test_the_hosts_own_policy_reaches_our_pages(tmp_path):
    host = make_host(tmp_path)
    policy = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"
    host.after_request(lambda resp: (resp.headers.setdefault("Content-Security-Policy", policy), resp)[1])
    client = sign_in(host.test_client())
    assert client.get("/panel/ssl/ca/").headers["Content-Security-Policy"] == policy


def test_sslmanager_csp_sets_our_pages_policy_and_never_the_hosts(tmp_path):
    host = make_host(tmp_path, SSLMANAGER_CSP=CSP)
    client = sign_in(host.test_client())
    resp = client.get("/panel/ssl/ca/")
    assert resp.headers["Content-Security-Policy"] == CSP and resp.headers["X-Frame-Options"] == "DENY"
    for page in ("/sites", "/login"):
        headers = client.get(page).headers
        assert "Content-Security-Policy" not in headers and "X-Frame-Options" not in headers
        assert "X-Content-Type-Options" not in headers


def test_every_page_carries_the_htmx_config_inside_the_host_layout(host):
    client = sign_in(host.test_client())
    for path in ("/panel/ssl/", "/panel/ssl/ca/", "/panel/ssl/certificates/", "/panel/ssl/dns/"):
        assert HTMX_CONFIG in client.get(path).get_data(as_text=True), path
    refused = sign_in(host.test_client(), "owner@example.net").get("/panel/ssl/ca/")
    assert refused.status_code == 403 and HTMX_CONFIG in refused.get_data(as_text=True)


def test_the_htmx_config_comes_even_when_the_host_loads_htmx_itself(tmp_path):
    host = make_host(tmp_path, SSLMANAGER_INCLUDE_ASSETS=False)
    html = sign_in(host.test_client()).get("/panel/ssl/ca/").get_data(as_text=True)
    assert HTMX_CONFIG in html and "htmx.min.js" not in html


def test_inside_the_host_layout_we_link_pico_scoped_under_our_root(host):
    html = sign_in(host.test_client()).get("/panel/ssl/ca/").get_data(as_text=True)
    assert "/panel/ssl/static/vendor/pico.scoped.min.css" in html and "vendor/pico.min.css" not in html
    assert '<div class="sslm"' in html and 'id="sslm-modal"' in html  # the CA Test dialog's target, named apart from a host's #modal


def test_every_rule_we_ship_for_host_pages_applies_under_our_root_only(host):
    for name in ("vendor/pico.scoped.min.css", "app.css"):
        css = (STATIC / name).read_text()
        selectors = _selectors(css)
        assert len(selectors) > 20
        stray = [s for s in selectors if not re.match(r"(\.sslm\b|\.sslm-|:where\(\.sslm\))", s)]
        assert not stray, (name, stray[:10])


def test_the_scoped_build_is_the_pinned_pico_and_its_licence(host):
    scoped = (STATIC / "vendor" / "pico.scoped.min.css").read_text()
    assert "Pico CSS" in scoped and "Licensed under MIT" in scoped
    assert _vendor().scope_css((STATIC / "vendor" / "pico.min.css").read_text(), ".sslm") == scoped


def test_scoping_maps_the_document_root_onto_ours():
    scope = _vendor().scope_css
    css = (':root,:host{--x:1}body{margin:0}:where(:root){color:red}nav li::before{content:"{"}'
           "@media (min-width:1px){:root:not([data-theme=dark]) a,h1{c:d}}@keyframes k{to{opacity:0}}")
    assert scope(css, ".r") == ('.r{--x:1}.r{margin:0}:where(.r){color:red}:where(.r) nav li::before{content:"{"}'
                                "@media (min-width:1px){.r:not([data-theme=dark]) a,:where(.r) h1{c:d}}"
                                "@keyframes k{to{opacity:0}}")


def test_our_flashes_show_once_and_the_hosts_stay_with_the_host(host):
    client = sign_in(host.test_client())  # the host flashes "Welcome"
    html = client.get("/panel/ssl/ca/new").get_data(as_text=True)
    assert re.findall(r'<p class="([^"]+)"[^>]*>[^<]*Welcome', html) == ["host-flash"]
    token = csrf_token(client, "/panel/ssl/ca/new")
    html = client.post("/panel/ssl/ca/new", data={"name": "LE", "module": "letsencrypt", "csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert re.findall(r'<p class="([^"]+)"[^>]*>[^<]*LE created', html) == ["sslm-flash sslm-flash-info"]
    assert "LE created" not in client.get("/sites").get_data(as_text=True)


def test_flashes_can_be_left_to_the_host_layout(tmp_path):
    host = make_host(tmp_path, SSLMANAGER_FLASHES="host")
    client = sign_in(host.test_client())
    client.get("/sites")  # the host shows its welcome
    token = csrf_token(client, "/panel/ssl/ca/new")
    html = client.post("/panel/ssl/ca/new", data={"name": "LE", "module": "letsencrypt", "csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert html.count("CA profile LE created.") == 1 and "info: CA profile LE created." in html
    assert "sslm-flash" not in html


def _selectors(css: str) -> list[str]:
    vendor = _vendor()
    found, i = [], 0
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    while i < len(css):
        head_end = vendor._scan(css, i, "{;")
        if head_end >= len(css) or css[head_end] == ";":
            i = head_end + 1
            continue
        end = vendor._block_end(css, head_end)
        head = css[i:head_end].strip()
        if head.startswith("@"):
            if "keyframes" not in head:
                found += _selectors(css[head_end + 1:end])
        else:
            found += [s.strip() for s in vendor._split_selectors(head)]
        i = end + 1
    return found


def _vendor():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import vendor
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return vendor
