"""Small things an operator reads: directory meta in JSON's words, times with their date when
not today and the exact time as a tooltip, failing CA profiles and zones under Needs attention."""
from __future__ import annotations

import re
from datetime import timedelta

from flask import render_template, render_template_string

from webapp import db
from webapp.acme.transport import DirectoryInfo
from webapp.models import TechZone, utcnow
from webapp.services import ca_profiles



def test_directory_meta_shows_true_and_false_as_json_does(app, profile_id):
    with app.app_context(), app.test_request_context("/ca/"):
        profile = ca_profiles.get(profile_id)
        result = ca_profiles.TestResult(ok=True, directory=DirectoryInfo(
            "https://ca.test/dir", {"newNonce": "https://ca.test/nonce"},
            {"externalAccountRequired": False, "profiles": {"classic": "90 days"}, "website": "https://ca.test"}))
        html = render_template("sslmanager/ca_profiles/_test_result.html", profile=profile, result=result, htmx=True)
    assert "<code>false</code>" in html and "False" not in html and "True" not in html


def test_times_show_the_date_unless_today_and_the_exact_time_as_a_tooltip(app):
    now = utcnow().replace(hour=12, minute=0, second=7)
    earlier = now - timedelta(days=2)
    with app.test_request_context("/"):
        today = render_template_string("{{ t|sslm_when }}", t=now)
        other = render_template_string("{{ t|sslm_when }}", t=earlier)
        none = render_template_string("{{ t|sslm_when }}", t=None)
    assert re.fullmatch(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d 12:00:07 UTC">today 12:00 UTC</time>', today)
    assert f">{earlier:%Y-%m-%d} 12:00 UTC</time>" in other and f'title="{earlier:%Y-%m-%d} 12:00:07 UTC"' in other
    assert "—" in none


def test_failing_ca_profiles_and_zones_are_in_needs_attention(admin_client, app, profile_id):
    html = admin_client.get("/").get_data(as_text=True)
    assert 'id="attention-none"' in html
    with app.app_context():
        profile = ca_profiles.get(profile_id)
        profile.last_test_ok, profile.last_test_message = False, "fetch directory: HTTP 404"
        profile.last_test_at = utcnow()
        db.session().add(TechZone(name="acme.tech.test", provider="rfc2136", options={},
                                  last_check_ok=False, last_check_message="rfc2136: BADSIG"))
        db.session().commit()
    html = admin_client.get("/").get_data(as_text=True)
    attention = re.search(r'<section aria-labelledby="attention-title".*?</section>', html, re.S).group(0)
    assert 'id="attention-none"' not in attention
    assert "CA profiles failing their test" in attention and "fetch directory: HTTP 404" in attention
    assert f'href="/ca/{profile_id}/edit"' in attention
    assert "DNS zones failing their check" in attention and "rfc2136: BADSIG" in attention
    assert re.search(r'href="/dns/zones/\d+/edit">acme.tech.test', attention)
