"""CA profiles: validation of every field, secrets kept write-only and encrypted, and Save and
Test against real Pebble and real failing servers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab.http import closed_port, http_server, pebble_tls, silent_server
from webapp import db
from webapp.errors import Conflict, ValidationError
from webapp.models import CAProfile, Certificate
from webapp.services import ca_profiles as service


def good_values(**over):
    values = {"name": "Lab", "email": "ops@example.com", "dns_zone": "acme.tech.test",
              "dns_ttl": "60", "api_timeout": "10"}
    values.update(over)
    return values


def custom_profile(app, directory_url, ca_bundle_pem="", **over) -> CAProfile:
    with app.app_context():
        profile = service.create({"name": over.pop("name", "Lab"), "module": "custom"})
        service.update(profile, good_values(name=profile.name, directory_url=directory_url,
                                            ca_bundle=ca_bundle_pem, **over))
        return profile.id


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def test_create_needs_a_name_and_an_available_module(ctx):
    with pytest.raises(ValidationError) as info:
        service.create({"name": "", "module": "nope"})
    assert set(info.value.errors) == {"name", "module"}


def test_new_lets_encrypt_profile_preselects_staging(ctx):
    profile = service.create({"name": "LE STAGING", "module": "letsencrypt"})
    assert profile.ca_key == "staging"
    assert "staging" in service.directory_url(profile)


def test_names_are_unique_whatever_the_case(ctx):
    service.create({"name": "LE PROD", "module": "letsencrypt"})
    with pytest.raises(ValidationError) as info:
        service.create({"name": "le prod", "module": "letsencrypt"})
    assert "already exists" in info.value.errors["name"]


@pytest.mark.parametrize("field,value,says", [
    ("email", "", "Enter the email"),
    ("email", "not-an-address", "valid email"),
    ("dns_zone", "", "technical zone"),
    ("dns_zone", "*.acme.example.com", "valid DNS name"),
    ("dns_zone", "localhost", "valid DNS name"),
    ("dns_ttl", "abc", "whole number"),
    ("dns_ttl", "5", f"between {service.TTL_MIN}"),
    ("api_timeout", "9999", f"between {service.TIMEOUT_MIN}"),
    ("eab_hmac", "not base64!", "base64url"),
])
def test_each_bad_field_is_named_with_the_fix(ctx, field, value, says):
    profile = service.create({"name": "X", "module": "letsencrypt"})
    values = good_values(name="X", ca_key="staging", eab_kid="kid", **{field: value})
    with pytest.raises(ValidationError) as info:
        service.update(profile, values)
    assert says in info.value.errors[field]


def test_eab_needs_both_key_id_and_hmac(ctx):
    profile = service.create({"name": "X", "module": "zerossl"})
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="X", eab_kid="kid-1"))
    assert "HMAC" in info.value.errors["eab_hmac"]
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="X", eab_hmac="abcd"))
    assert "Key ID" in info.value.errors["eab_kid"]


# kid-2's key of the lab Pebble (tests/lab/pebble.py), in the forms CAs print it.
EAB_URL = "f71XVHAH6jYse7O-0NERyen4yKx5X12l_XcQPlCEWtU"   # unpadded base64url: what is stored
EAB_STD = "f71XVHAH6jYse7O+0NERyen4yKx5X12l/XcQPlCEWtU="  # padded standard base64


@pytest.mark.parametrize("typed, stored", [
    (EAB_URL, EAB_URL),
    (EAB_URL + "=", EAB_URL),                          # base64url, padded
    (EAB_STD, EAB_URL),                                # standard base64, padded
    (EAB_STD.rstrip("="), EAB_URL),                    # standard base64, unpadded
    (f"  {EAB_STD}\n", EAB_URL),                       # whitespace around
    (f"{EAB_STD[:20]}\r\n{EAB_STD[20:]}", EAB_URL),    # wrapped by a mail client
    (f"{EAB_URL[:11]} {EAB_URL[11:22]} {EAB_URL[22:]}", EAB_URL),  # grouped with spaces
    ("YQ==", "YQ"), ("YWI=", "YWI"), ("YWI", "YWI"),  # one and two bytes left over
])
def test_eab_hmac_forms_are_accepted_and_stored_as_unpadded_base64url(ctx, typed, stored):
    profile = service.create({"name": "E", "module": "zerossl"})
    service.update(profile, good_values(name="E", eab_kid="kid-2", eab_hmac=typed))
    db.session().expire_all()
    assert service.get(profile.id).eab_hmac == stored


@pytest.mark.parametrize("typed", [
    "NOT base64 SECRET!",                              # punctuation
    "f71XVHAH6jYse7O+0NERyen4yKx5X12l_XcQPlCEWtU",     # both alphabets: a damaged copy
    "SECRETKEYab=cdef",                                # padding in the middle
    "SECRETKEYabc==",                                  # padding after a whole group
    "SECRETKEY=",                                      # padding that makes no group of four
    "SECRETKEYab===",                                  # three padding characters
    "SECRETKEYabcd",                                   # 13 characters: six bits left over
    "SECRETKEY\u00e9abc",                              # not ASCII
])
def test_other_eab_hmac_text_is_refused_naming_the_field_without_echoing_it(ctx, typed):
    profile = service.create({"name": "E", "module": "zerossl"})
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="E", eab_kid="kid-2", eab_hmac=typed))
    message = info.value.errors["eab_hmac"]
    assert "EAB HMAC Key" in message and "base64" in message
    assert "SECRET" not in message and "SECRET" not in str(info.value)
    db.session().rollback()
    assert service.get(profile.id).eab_hmac is None


def test_failed_save_writes_nothing(ctx):
    profile = service.create({"name": "X", "module": "letsencrypt"})
    with pytest.raises(ValidationError):
        service.update(profile, good_values(name="Renamed", email="bad"))
    db.session().rollback()
    assert db.session().get(CAProfile, profile.id).name == "X"


def test_blank_hmac_keeps_the_stored_one_and_clear_removes_it(ctx):
    profile = service.create({"name": "Z", "module": "zerossl"})
    service.update(profile, good_values(name="Z", eab_kid="kid-1", eab_hmac="c2VjcmV0LWhtYWM"))
    service.update(profile, good_values(name="Z", eab_kid="kid-1", eab_hmac=""))
    assert profile.eab_hmac == "c2VjcmV0LWhtYWM"
    service.update(profile, good_values(name="Z", eab_clear="1"))
    assert profile.eab_hmac is None and profile.eab_kid == ""


def test_secrets_are_encrypted_in_the_database_file(app, tmp_path):
    with app.app_context():
        profile = service.create({"name": "Z", "module": "zerossl"})
        service.update(profile, good_values(name="Z", eab_kid="kid-1", eab_hmac="SECRETHMACVALUE123",
                                            api_key="SECRET-API-KEY-456"))
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "instance").glob("sslmanager.db*"))
    assert b"SECRETHMACVALUE123" not in raw and b"SECRET-API-KEY-456" not in raw


def test_custom_module_requires_an_https_directory_url(ctx):
    profile = service.create({"name": "C", "module": "custom"})
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="C", directory_url="http://ca.example/dir"))
    assert "https://" in info.value.errors["directory_url"]


def test_directory_at_a_metadata_address_is_always_refused(ctx):
    profile = service.create({"name": "C", "module": "custom"})
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="C", directory_url="https://169.254.169.254/dir"))
    assert "metadata" in info.value.errors["directory_url"]


def test_private_directory_refused_unless_allowed(ctx):
    ctx.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = False
    profile = service.create({"name": "C", "module": "custom"})
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="C", directory_url="https://127.0.0.1:14000/dir"))
    assert "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES" in info.value.errors["directory_url"]


def test_ca_bundle_must_be_pem_certificates(ctx):
    profile = service.create({"name": "C", "module": "custom"})
    with pytest.raises(ValidationError) as info:
        service.update(profile, good_values(name="C", directory_url="https://ca.example/dir",
                                            ca_bundle="garbage"))
    assert "PEM" in info.value.errors["ca_bundle"]


def test_duplicate_copies_fields_but_not_the_account(app, lab_pebble):
    pid = custom_profile(app, lab_pebble.directory_url, Path(lab_pebble.ca_bundle).read_text())
    with app.app_context():
        profile = service.get(pid)
        assert service.test(profile).ok
        copy = service.duplicate(profile)
        assert copy.name == "Lab (copy)" and copy.dns_zone == profile.dns_zone
        assert copy.account_url == "" and copy.account_key is None


def test_delete_refused_while_certificates_use_the_profile(ctx):
    profile = service.create({"name": "X", "module": "letsencrypt"})
    db.session().add(Certificate(profile_id=profile.id, domains=["a.test"], common_name="a.test"))
    db.session().commit()
    with pytest.raises(Conflict, match="used by 1 certificate"):
        service.delete(profile)


# -- Save and Test against real servers -------------------------------------------------------

def test_save_and_test_against_pebble_shows_endpoints_and_registers_the_account(app, lab_pebble):
    pid = custom_profile(app, lab_pebble.directory_url, Path(lab_pebble.ca_bundle).read_text())
    with app.app_context():
        profile = service.get(pid)
        result = service.test(profile)
        assert result.ok and result.message == "API is available"
        assert {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"} <= set(result.directory.endpoints)
        assert result.account_url.startswith("https://127.0.0.1") and result.account_status == "valid"
        key, url = profile.account_key, profile.account_url
        assert profile.last_test_ok is True
        # Tested again: the same key, the same account.
        service.test(profile)
        assert profile.account_key == key and profile.account_url == url


def test_changing_the_email_updates_the_account_contact(app, lab_pebble):
    pid = custom_profile(app, lab_pebble.directory_url, Path(lab_pebble.ca_bundle).read_text())
    with app.app_context():
        profile = service.get(pid)
        service.test(profile)
        url = profile.account_url
        service.update(profile, good_values(name="Lab", directory_url=lab_pebble.directory_url,
                                            ca_bundle=profile.ca_bundle, email="new@example.com"))
        assert service.test(profile).ok
        assert profile.account_url == url and profile.account_email == "new@example.com"


def test_untrusted_tls_certificate_says_to_set_the_ca_bundle(app, lab_pebble):
    pid = custom_profile(app, lab_pebble.directory_url)
    with app.app_context():
        result = service.test(service.get(pid))
    assert not result.ok and "TLS" in result.message and "bundle" in result.hint.lower()


def test_closed_port_says_connection_refused(app, lab_pebble):
    pid = custom_profile(app, f"https://127.0.0.1:{closed_port()}/dir")
    with app.app_context():
        result = service.test(service.get(pid))
    assert not result.ok and "refused" in result.message.lower()


def test_slow_server_says_timed_out_after_the_api_timeout(app):
    with silent_server() as port:
        pid = custom_profile(app, f"https://127.0.0.1:{port}/dir", api_timeout="2")
        with app.app_context():
            result = service.test(service.get(pid))
    assert not result.ok and "timed out after 2 seconds" in result.message


def test_json_that_is_not_a_directory_is_named_so(app, lab_pebble):
    def handler(_request):
        return 200, {"Content-Type": "application/json"}, json.dumps({"hello": "world"}).encode()
    with http_server(handler, tls=pebble_tls(lab_pebble)) as base:
        pid = custom_profile(app, f"{base}/dir", Path(lab_pebble.ca_bundle).read_text())
        with app.app_context():
            result = service.test(service.get(pid))
    assert not result.ok and "not an ACME directory" in result.message


def test_unresolvable_host_says_name_resolution_failed(app):
    pid = custom_profile(app, "https://ca.nonexistent.invalid/dir")
    with app.app_context():
        result = service.test(service.get(pid))
    assert not result.ok and "resolve" in result.message.lower()


def test_eab_ca_without_credentials_says_eab_required_but_missing(app, lab_pebble_eab):
    pid = custom_profile(app, lab_pebble_eab.directory_url, Path(lab_pebble_eab.ca_bundle).read_text())
    with app.app_context():
        result = service.test(service.get(pid))
    assert not result.ok and "EAB required but missing" in result.message
    assert "EAB Key ID" in result.hint


def test_eab_ca_with_wrong_credentials_quotes_the_ca(app, lab_pebble_eab):
    pid = custom_profile(app, lab_pebble_eab.directory_url, Path(lab_pebble_eab.ca_bundle).read_text(),
                         eab_kid="kid-1", eab_hmac="d3JvbmctaG1hYy1rZXktd3Jvbmctd3Jvbmctd3Jvbmc")
    with app.app_context():
        result = service.test(service.get(pid))
    assert not result.ok and result.detail  # the CA's own problem detail, quoted
    assert "external account binding" in (result.message + result.detail).lower()
    assert "EAB Key ID" in result.hint


def test_eab_ca_with_right_credentials_registers(app, lab_pebble_eab):
    kid, hmac = next(iter(lab_pebble_eab.eab_keys.items()))
    pid = custom_profile(app, lab_pebble_eab.directory_url, Path(lab_pebble_eab.ca_bundle).read_text(),
                         eab_kid=kid, eab_hmac=hmac)
    with app.app_context():
        result = service.test(service.get(pid))
    assert result.ok and result.account_status == "valid"
    assert result.directory.meta.get("externalAccountRequired") is True


def test_eab_key_typed_in_padded_standard_base64_registers_at_pebble(app, lab_pebble_eab):
    # Pebble itself only takes unpadded base64url: the key must reach it re-encoded, as bytes.
    assert lab_pebble_eab.eab_keys["kid-2"] == EAB_URL
    pid = custom_profile(app, lab_pebble_eab.directory_url, Path(lab_pebble_eab.ca_bundle).read_text(),
                         eab_kid="kid-2", eab_hmac=f" {EAB_STD}\n")
    with app.app_context():
        result = service.test(service.get(pid))
        assert service.get(pid).eab_hmac == EAB_URL
    assert result.ok and result.account_status == "valid", result.message + result.detail


# -- ZeroSSL module end to end against Pebble, via the local EAB REST stand-in ---------------

@pytest.fixture
def zerossl_app(app, lab_pebble_eab, lab_zerossl_api):
    app.config["SSLMANAGER_CA_OVERRIDES"] = {"zerossl": {
        "directory_url": lab_pebble_eab.directory_url, "ca_bundle": lab_pebble_eab.ca_bundle,
        "api_url": lab_zerossl_api.url}}
    return app


def test_zerossl_with_api_key_gets_eab_from_the_rest_api(zerossl_app, lab_zerossl_api):
    with zerossl_app.app_context():
        profile = service.create({"name": "ZeroSSL", "module": "zerossl"})
        service.update(profile, good_values(name="ZeroSSL", api_key=lab_zerossl_api.valid_access_key))
        result = service.test(profile)
    assert result.ok and result.account_status == "valid"
    assert lab_zerossl_api.requests[-1] == ("/acme/eab-credentials", {"access_key": lab_zerossl_api.valid_access_key})


def test_zerossl_with_a_wrong_api_key_quotes_zerossl(zerossl_app):
    with zerossl_app.app_context():
        profile = service.create({"name": "ZeroSSL", "module": "zerossl"})
        service.update(profile, good_values(name="ZeroSSL", api_key="wrong"))
        result = service.test(profile)
    assert not result.ok and "invalid_access_key" in result.detail


def test_zerossl_without_keys_uses_temporary_credentials_per_certificate(zerossl_app, lab_zerossl_api):
    with zerossl_app.app_context():
        profile = service.create({"name": "ZeroSSL", "module": "zerossl"})
        service.update(profile, good_values(name="ZeroSSL"))
        result = service.test(profile)
    assert result.ok and "own ACME account" in result.notes[0]
    assert lab_zerossl_api.requests[-1] == ("/acme/eab-credentials-email", {"email": "ops@example.com"})
