"""Single sign-on in a real browser, through the lab's OpenID Provider (npm oidc-provider on
loopback): vera (group ssl-viewers) signs in as a viewer and sees no button to create a
certificate; otto (ssl-operators) as an operator does; signing out goes on to the provider."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from webapp.services import oidc

pytestmark = [pytest.mark.browser, pytest.mark.lab]


@pytest.fixture
def sso_server(live_server, oidc_factory):
    provider = oidc_factory(redirect_uris=[f"{live_server.url}/login/sso/callback"],
                            post_logout_redirect_uris=[f"{live_server.url}/login"])
    keys = {"SSLMANAGER_OIDC_ISSUER": provider.issuer, "SSLMANAGER_OIDC_CLIENT_ID": provider.client_id,
            "SSLMANAGER_OIDC_CLIENT_SECRET": provider.client_secret,
            "SSLMANAGER_OIDC_ROLES": {"ssl-viewers": "viewer", "ssl-operators": "operator"}}
    before = {key: live_server.app.config[key] for key in keys}
    live_server.app.config.update(keys)
    oidc._cache.clear()
    yield provider
    live_server.app.config.update(before)
    oidc._cache.clear()


def sign_in_through_the_provider(page, login: str) -> None:
    page.goto("/login")
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    page.locator("button[type=submit]").first.click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


@pytest.mark.parametrize("login, operator", [("vera", False), ("otto", True)])
def test_sign_in_through_the_provider_with_the_groups_role(new_page, sso_server, login, operator):
    page = new_page()
    sign_in_through_the_provider(page, login)
    page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name="Certificates").click()
    expect(page.get_by_role("heading", name="Certificates", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="+ Create")).to_have_count(1 if operator else 0)
    expect(page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name="Users")).to_have_count(0)
    response = page.goto("/certificates/new")
    assert response.status == (200 if operator else 403)
    page.goto("/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{sso_server.issuer}/**")
    assert page.context.request.get("/", max_redirects=0).status == 302  # signed out here


def test_someone_in_no_mapped_group_gets_a_clear_page(new_page, sso_server):
    page = new_page()
    page.goto("/login")
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.locator("input[name=login]").fill("stranger")
    page.locator("input[name=password]").fill("any password")
    page.locator("button[type=submit]").first.click()
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.locator("#sso-error")).to_contain_text("in no group that SSL Manager maps to a role")
