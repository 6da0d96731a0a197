"""`sslmanager ca ...` mirrors the UI with the same validation."""
from __future__ import annotations

import json

from webapp import db
from webapp.models import CAProfile


def test_add_list_edit_delete(runner, app):
    result = runner.invoke(args=["sslmanager", "ca", "add", "--name", "LE STAGING", "--module", "letsencrypt",
                                 "--email", "it@company.test", "--dns-zone", "acme.tech.test", "--ttl", "45"])
    assert result.exit_code == 0, result.output
    listing = json.loads(runner.invoke(args=["sslmanager", "ca", "list", "--json"]).output)
    assert listing[0]["name"] == "LE STAGING" and listing[0]["ttl"] == 45 and listing[0]["ca"] == "staging"
    result = runner.invoke(args=["sslmanager", "ca", "edit", "LE STAGING", "--allow-wildcard", "--timeout", "30",
                                 "--preferred-chain", "ISRG Root X2"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        profile = db.session().query(CAProfile).one()
        assert profile.allow_wildcard and profile.api_timeout == 30 and profile.dns_ttl == 45
        assert profile.preferred_chain == "ISRG Root X2"
    assert json.loads(runner.invoke(args=["sslmanager", "ca", "list", "--json"]).output)[0]["preferred_chain"] \
        == "ISRG Root X2"
    result = runner.invoke(args=["sslmanager", "ca", "edit", "LE STAGING", "--preferred-chain", ""])
    with app.app_context():
        assert result.exit_code == 0 and db.session().query(CAProfile).one().preferred_chain == ""
    assert runner.invoke(args=["sslmanager", "ca", "delete", "LE STAGING", "--yes"]).exit_code == 0


def test_add_with_bad_fields_names_each_and_saves_nothing(runner, app):
    result = runner.invoke(args=["sslmanager", "ca", "add", "--name", "X", "--module", "zerossl",
                                 "--email", "nope", "--dns-zone", "acme.tech.test", "--eab-kid", "k"])
    assert result.exit_code == 1
    assert "email:" in result.output and "eab_hmac:" in result.output
    with app.app_context():
        assert db.session().query(CAProfile).count() == 0


def test_list_json_never_prints_secrets(runner):
    runner.invoke(args=["sslmanager", "ca", "add", "--name", "Z", "--module", "zerossl", "--email", "a@b.test",
                        "--dns-zone", "acme.tech.test", "--eab-kid", "kid", "--eab-hmac", "SECRETHMAC",
                        "--api-key", "SECRETKEY"])
    out = runner.invoke(args=["sslmanager", "ca", "list", "--json"]).output
    assert "SECRETHMAC" not in out and "SECRETKEY" not in out
    row = json.loads(out)[0]
    assert row["eab_hmac_set"] and row["api_key_set"]


def test_ca_test_prints_api_is_available_and_exits_0(runner, lab_pebble):
    runner.invoke(args=["sslmanager", "ca", "add", "--name", "Pebble", "--module", "custom",
                        "--directory-url", lab_pebble.directory_url, "--ca-bundle", lab_pebble.ca_bundle,
                        "--email", "a@b.test", "--dns-zone", "acme.tech.test"])
    result = runner.invoke(args=["sslmanager", "ca", "test", "Pebble"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("API is available") and "newOrder" in result.output


def test_ca_test_prints_the_diagnosis_and_exits_1(runner, lab_pebble):
    runner.invoke(args=["sslmanager", "ca", "add", "--name", "Pebble", "--module", "custom",
                        "--directory-url", lab_pebble.directory_url, "--email", "a@b.test",
                        "--dns-zone", "acme.tech.test"])
    result = runner.invoke(args=["sslmanager", "ca", "test", "Pebble"])
    assert result.exit_code == 1 and "TLS" in result.output and "hint:" in result.output


def test_delete_of_unknown_profile_says_how_to_list(runner):
    result = runner.invoke(args=["sslmanager", "ca", "delete", "nope", "--yes"])
    assert result.exit_code == 1 and "ca list" in result.output


def test_eab_hmac_from_stdin_is_validated_and_normalised_like_the_form(runner, app):
    # Padded standard base64, wrapped over two lines as a mail client would.
    typed = "f71XVHAH6jYse7O+0NERyen4\nyKx5X12l/XcQPlCEWtU=\n"
    result = runner.invoke(args=["sslmanager", "ca", "add", "--name", "Z", "--module", "zerossl",
                                 "--email", "a@b.test", "--dns-zone", "acme.tech.test",
                                 "--eab-kid", "kid-2", "--eab-hmac-stdin"], input=typed)
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session().query(CAProfile).one().eab_hmac == "f71XVHAH6jYse7O-0NERyen4yKx5X12l_XcQPlCEWtU"
    result = runner.invoke(args=["sslmanager", "ca", "edit", "Z", "--eab-hmac-stdin"],
                           input="SECRET+mixed_alphabets\n")
    assert result.exit_code == 1 and "EAB HMAC Key" in result.output
    assert "SECRET" not in result.output
    with app.app_context():
        assert db.session().query(CAProfile).one().eab_hmac == "f71XVHAH6jYse7O-0NERyen4yKx5X12l_XcQPlCEWtU"
