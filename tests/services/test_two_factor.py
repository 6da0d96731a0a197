"""TOTP: enrolment, a code good once, recovery codes used up, hashes only, the QR code drawn
here as SVG; the secret rotates with the data key."""
from __future__ import annotations

import hashlib
import time

import pyotp
import pytest

from webapp import db
from webapp.crypto import Keyring, new_data_key, decode_key
from webapp.errors import ValidationError
from webapp.models import Admin
from webapp.services import secrets as secret_service, two_factor
from webapp.services.auth import create_admin


def raw(app) -> str:
    """The column as stored (encrypted), past the Encrypted type."""
    with app.extensions["sslmanager"].engine.connect() as conn:
        return conn.exec_driver_sql("SELECT totp_secret FROM sslm_admin").scalar()


def enrolled(app):
    user = create_admin("alice", "a long enough password", role="operator")
    secret = two_factor.pending_secret(user)
    codes = two_factor.confirm(user, pyotp.TOTP(secret).now())
    return user, secret, codes


def test_enrolment_needs_a_right_code_and_gives_ten_recovery_codes_kept_hashed(app):
    with app.app_context():
        user = create_admin("alice", "a long enough password")
        secret = two_factor.pending_secret(user)
        assert two_factor.pending_secret(user) == secret  # a reload shows the same QR code
        with pytest.raises(ValidationError, match="marked"):
            two_factor.confirm(user, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
        assert not two_factor.enabled(user)
        codes = two_factor.confirm(user, pyotp.TOTP(secret).now())
        assert two_factor.enabled(user) and len(codes) == 10 and len(set(codes)) == 10
        stored = db.session().get(Admin, user.id).recovery_codes
        assert stored == [hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes]


def test_a_code_is_good_once_and_a_recovery_code_once(app):
    with app.app_context():
        user, secret, codes = enrolled(app)
        later = time.time() + 30  # the enrolment used the current step
        code = pyotp.TOTP(secret).at(later)
        assert two_factor._check_totp(user, code, later)
        assert not two_factor._check_totp(user, code, later)  # replayed
        assert two_factor.verify(user, codes[0].lower()) == "recovery code"
        assert two_factor.verify(user, codes[0]) is None
        assert len(user.recovery_codes) == 9
        assert two_factor.verify(user, "12345") is None and two_factor.verify(user, "") is None


def test_the_qr_code_is_an_inline_svg_of_the_otpauth_uri(app):
    with app.app_context():
        user = create_admin("alice", "a long enough password")
        uri = two_factor.provisioning_uri(user, two_factor.pending_secret(user))
        assert uri.startswith("otpauth://totp/SSL%20Manager:alice?secret=")
        svg = two_factor.qr_svg(uri)
        assert svg.startswith("<svg") and "<script" not in svg and "http" not in svg.split(">", 1)[1]


def test_disabling_needs_a_code_and_forgets_the_secret(app):
    with app.app_context():
        user, secret, codes = enrolled(app)
        with pytest.raises(ValidationError):
            two_factor.disable(user, "nonsense")
        two_factor.disable(user, codes[3])
        assert not two_factor.enabled(user) and user.totp_secret is None and user.recovery_codes == []


def test_key_rotation_re_encrypts_the_totp_secret(app):
    with app.app_context():
        user, secret, _codes = enrolled(app)
        state = app.extensions["sslmanager"]
        old = state.keyring
        new = Keyring(decode_key(new_data_key(), "key"), (old.primary, *old.others))
        raw_before = raw(app)
        assert secret_service.rotate(new) >= 1
        state.keyring = Keyring(new.primary, ())
        db.session().expire_all()
        raw_after = raw(app)
        assert raw_after != raw_before and secret not in raw_after
        assert db.session().get(Admin, user.id).totp_secret == secret
