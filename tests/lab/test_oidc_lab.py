"""The lab's OpenID Provider (npm oidc-provider) really runs the authorization code flow with
PKCE, signs ID tokens with the users' groups, and offers RP-initiated logout."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

pytest_plugins = ["tests.lab.fixtures"]

CALLBACK = "http://127.0.0.1:9/callback"  # never requested: the code is read off the redirect


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sign_in(provider, login: str, verifier: str) -> str:
    """Authorization request → the development login form → the redirect's code."""
    meta = requests.get(provider.discovery_url, timeout=5).json()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    browser = requests.Session()
    page = browser.get(meta["authorization_endpoint"], timeout=5, params={
        "client_id": provider.client_id, "response_type": "code", "redirect_uri": CALLBACK,
        "scope": "openid email profile groups", "state": "s1", "nonce": "n1",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)
    answer = browser.post(urljoin(page.url, action), data={"prompt": "login", "login": login,
                                                           "password": "any"}, allow_redirects=False)
    location = answer.headers["location"]
    while not location.startswith(CALLBACK):
        answer = browser.get(urljoin(answer.url, location), allow_redirects=False, timeout=5)
        location = answer.headers["location"]
    query = parse_qs(urlparse(location).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


@pytest.mark.parametrize("login, groups", [("vera", ["ssl-viewers"]), ("otto", ["ssl-operators", "staff"]),
                                           ("stranger", [])])
def test_the_code_flow_gives_an_id_token_with_the_users_groups(oidc_factory, login, groups):
    provider = oidc_factory(redirect_uris=[CALLBACK])
    meta = requests.get(provider.discovery_url, timeout=5).json()
    assert meta["issuer"] == provider.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["end_session_endpoint"]  # RP-initiated logout is on
    verifier = secrets.token_urlsafe(48)
    code = sign_in(provider, login, verifier)
    tokens = requests.post(meta["token_endpoint"], auth=(provider.client_id, provider.client_secret), timeout=5,
                           data={"grant_type": "authorization_code", "code": code,
                                 "redirect_uri": CALLBACK, "code_verifier": verifier}).json()
    claims = claims_of(tokens["id_token"])
    assert (claims["sub"], claims["aud"], claims["iss"], claims["nonce"]) == (login, provider.client_id,
                                                                            provider.issuer, "n1")
    assert claims["groups"] == groups


def test_a_wrong_pkce_verifier_is_refused(oidc_factory):
    provider = oidc_factory(redirect_uris=[CALLBACK])
    meta = requests.get(provider.discovery_url, timeout=5).json()
    code = sign_in(provider, "vera", secrets.token_urlsafe(48))
    answer = requests.post(meta["token_endpoint"], auth=(provider.client_id, provider.client_secret), timeout=5,
                           data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                                 "code_verifier": secrets.token_urlsafe(48)})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
