"""Passkeys at the service's boundary, with a software authenticator answering the real options
(tests/softkey.py): registration asks for a discoverable key, the password-less sign-in names
no credential and requires user verification, and it refuses what a forged, cloned or
unverified key sends, a disabled user, a stale or replayed challenge; failures count in the
sign-in throttle per address; the local-sign-in policy applies as to passwords."""
from __future__ import annotations

import json

import pytest

from tests.softkey import SoftKey
from webapp import db
from webapp.models import Passkey
from webapp.services import passkeys
from webapp.services.auth import RateLimited, create_admin

ADDRESS = "192.0.2.7"


def registered(user, key: SoftKey) -> Passkey:
    return passkeys.register(user, key.register(passkeys.registration_options(user)), "laptop")


def attempt(key: SoftKey, address: str = ADDRESS, **answer):
    """One password-less sign-in in this request: the user, or the refusal's message."""
    options = passkeys.sign_in_options(address)
    try:
        return passkeys.sign_in(key.answer(options, **answer), address)
    except passkeys.SignInRefused as exc:
        return exc.message


@pytest.fixture
def ctx(app):
    with app.test_request_context(base_url="http://localhost"):
        yield app


def test_registration_asks_for_a_discoverable_key_and_sign_in_for_user_verification(ctx):
    user = create_admin("pia", "pia's long password", role="operator")
    created = json.loads(passkeys.registration_options(user))
    assert created["authenticatorSelection"]["residentKey"] == "preferred"
    assert created["user"]["id"] == "c3NsbS11c2VyLTE"  # base64url of "sslm-user-1": the user handle
    asked = json.loads(passkeys.sign_in_options(ADDRESS))
    assert asked["allowCredentials"] == [] and asked["userVerification"] == "required"
    assert asked["rpId"] == "localhost"


def test_a_discoverable_passkey_with_user_verification_signs_in_alone(ctx):
    user = create_admin("pia", "pia's long password", role="operator")
    key = SoftKey()
    stored = registered(user, key)
    assert attempt(key) is user
    assert stored.sign_count == 1 and stored.last_used_at is not None and user.last_login_at is not None
    db.session().commit()
    assert attempt(key) is user  # a fresh challenge each time, the counter going up


def test_a_challenge_is_used_once(ctx):
    user = create_admin("pia", "pia's long password")
    key = SoftKey()
    registered(user, key)
    options = passkeys.sign_in_options(ADDRESS)
    answer = key.answer(options)
    assert passkeys.sign_in(answer, ADDRESS) is user
    with pytest.raises(passkeys.SignInRefused, match="not accepted"):
        passkeys.sign_in(answer, ADDRESS)  # replayed: the challenge is gone


def test_without_user_verification_the_passkey_is_refused(ctx):
    user = create_admin("pia", "pia's long password")
    key = SoftKey(verifies_user=False)
    registered(user, key)  # fine as a second factor after the password
    assert attempt(key) == passkeys.REFUSED
    assert passkeys.verify(user, key.answer(passkeys.authentication_options(user)))


def test_a_counter_going_backwards_is_refused(ctx):
    user = create_admin("pia", "pia's long password")
    key = SoftKey()
    registered(user, key)
    assert attempt(key, count=5) is user
    db.session().commit()
    assert attempt(key, count=3) == passkeys.REFUSED  # a cloned key
    assert db.session().query(Passkey).one().sign_count == 5


def test_unknown_keys_another_users_handle_and_disabled_users_are_refused(ctx):
    pia = create_admin("pia", "pia's long password")
    sam = create_admin("sam", "sam's long password")
    key, other = SoftKey(), SoftKey()
    registered(pia, key)
    registered(sam, other)
    other.user_handle = None
    assert attempt(SoftKey()) == passkeys.REFUSED  # never registered
    assert attempt(key, user_handle=f"sslm-user-{sam.id}".encode()) == passkeys.REFUSED
    assert attempt(other) == passkeys.REFUSED  # no user handle: the key is not a discoverable one
    pia.disabled = True
    db.session().commit()
    assert attempt(key) == passkeys.REFUSED


def test_a_stale_challenge_is_refused(ctx):
    from flask import session
    user = create_admin("pia", "pia's long password")
    key = SoftKey()
    registered(user, key)
    options = passkeys.sign_in_options(ADDRESS)
    session[passkeys.CHALLENGE_KEY][3] -= passkeys.PENDING + 1
    with pytest.raises(passkeys.SignInRefused):
        passkeys.sign_in(key.answer(options), ADDRESS)


def test_failures_count_in_the_sign_in_throttle_for_the_address(ctx):
    ctx.config.update(SSLMANAGER_LOGIN_MAX_PER_ACCOUNT=2, SSLMANAGER_LOGIN_MAX_PER_ADDRESS=2)
    user = create_admin("pia", "pia's long password")
    key = SoftKey()
    registered(user, key)
    assert attempt(SoftKey()) == attempt(SoftKey()) == passkeys.REFUSED
    with pytest.raises(RateLimited):
        passkeys.sign_in_options(ADDRESS)
    with pytest.raises(RateLimited):
        passkeys.sign_in(key.answer('{"challenge": "AAAA"}'), ADDRESS)
    assert attempt(key, address="192.0.2.8") is user  # another address is not slowed


def test_with_passwords_off_only_break_glass_users_and_never_sso_users_sign_in_so(ctx):
    ctx.config.update(SSLMANAGER_PASSWORD_SIGN_IN=False, SSLMANAGER_BREAK_GLASS_USERS=["root"])
    root, pia = create_admin("root", "the break-glass password"), create_admin("pia", "pia's long password")
    root_key, pia_key = SoftKey(), SoftKey()
    registered(root, root_key)
    registered(pia, pia_key)
    assert attempt(pia_key) == "Local sign-in is turned off here: sign in with single sign-on."
    assert attempt(root_key) is root
    ctx.config["SSLMANAGER_PASSWORD_SIGN_IN"] = True
    pia.oidc_subject = "https://idp.example pia"
    db.session().commit()
    assert attempt(pia_key) == "This account signs in with single sign-on."
