"""Every outbound connection obeys the one address policy, at save time (an error beside the
field) and at connect time (no connection at all): SMTP hosts, the PowerDNS API, RFC 2136
servers and the deploy probe. A real listener on loopback proves that nothing arrived; each
purpose's allow-list opens what it lists. The suite's app allows private addresses (the lab
lives on loopback): these tests turn that off."""
from __future__ import annotations

import select
import socket
import threading
from contextlib import contextmanager

import pytest

from tests.conftest import signed_in
from tests.lab.servers import TECH_ZONE, TSIG_ALGORITHM, TSIG_KEY_NAME, TSIG_SECRET
from tests.services.test_notifications import smtp_server
from webapp import db
from webapp.errors import DnsError, ValidationError
from webapp.models import CAProfile, Certificate
from webapp.services import deploy, notifications, zones

EMAIL = {"name": "Relay", "enabled": "1", "security": "none", "from_addr": "sslmanager@example.com",
         "to": "ops@example.com", "events": ["issued"]}


class Listener:
    """TCP and UDP on one free loopback port; counts every connection and datagram. TCP
    connections are accepted and closed at once, so a client that got in fails fast."""

    def __init__(self):
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.arrived: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            ready, _, _ = select.select([self.tcp, self.udp], [], [], 0.05)
            for sock in ready:
                if sock is self.tcp:
                    conn, _peer = self.tcp.accept()
                    conn.close()
                    self.arrived.append("tcp")
                else:
                    self.udp.recvfrom(65535)
                    self.arrived.append("udp")

    def count(self) -> int:
        """Connections so far, once everything already sent has been taken in."""
        ready, _, _ = select.select([self.tcp, self.udp], [], [], 0.2)
        while ready and not self.stop.is_set():
            ready, _, _ = select.select([self.tcp, self.udp], [], [], 0.2)
        return len(self.arrived)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.tcp.close()
        self.udp.close()


@contextmanager
def listener():
    lis = Listener()
    try:
        yield lis
    finally:
        lis.close()


@pytest.fixture
def strict(app):
    """The app as shipped: no private addresses for anyone, the default allow-lists."""
    app.config.update(SSLMANAGER_ALLOW_PRIVATE_ADDRESSES=False, SSLMANAGER_NOTIFY_TIMEOUT=2)
    return app


# -- SMTP --------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "127.1", "10.0.0.25",
                                  "100.100.100.200", "169.254.169.254", "::ffff:127.0.0.1"])
def test_an_smtp_channel_at_an_internal_address_cannot_be_saved(strict, host):
    client = signed_in(strict)
    resp = client.post("/notifications/new/email", data={**EMAIL, "host": host, "port": "25"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and ("SSLMANAGER_OUTBOUND_ALLOW_SMTP" in html or "never an SMTP server" in html)
    with strict.app_context():
        assert notifications.all_channels() == []


def test_send_test_does_not_connect_to_a_refused_smtp_host(strict):
    with listener() as lis:
        strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True  # saved while it was allowed
        with strict.app_context():
            channel_id = notifications.save_channel(None, "email", {**EMAIL, "host": "127.0.0.1",
                                                                    "port": str(lis.port)}).id
        strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = False
        resp = signed_in(strict).post(f"/notifications/{channel_id}/test")
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200 and "SSLMANAGER_OUTBOUND_ALLOW_SMTP" in html
        assert lis.count() == 0
        # The same channel with the setting back on does connect: the listener works.
        strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True
        with strict.app_context():
            result = notifications.send_test(notifications.get_channel(channel_id))
        assert not result.ok and lis.count() == 1


def test_the_smtp_allow_list_lets_the_mail_relay_in(strict):
    strict.config["SSLMANAGER_OUTBOUND_ALLOW_SMTP"] = ["127.0.0.1/32"]
    with smtp_server() as (port, inbox), strict.app_context():
        channel = notifications.save_channel(None, "email", {**EMAIL, "host": "127.0.0.1", "port": str(port)})
        result = notifications.send_test(channel)
        assert result.ok, result.message
    assert len(inbox.messages) == 1
    with strict.app_context():  # the list is for SMTP only: a webhook there is still refused
        assert "SSLMANAGER_OUTBOUND_ALLOW_WEBHOOK" in notifications.url_problem(f"http://127.0.0.1:{port}/")


# -- PowerDNS API and RFC 2136 -----------------------------------------------------------------

def pdns_form(port: int, **over) -> dict:
    return {"name": TECH_ZONE, "provider": "powerdns", "api_url": f"http://127.0.0.1:{port}",
            "api_key": "lab-key-never-sent", "server_id": "localhost", "dns_server": f"127.0.0.1:{port}", **over}


def test_a_powerdns_api_url_at_an_internal_address_cannot_be_saved_and_gets_no_request(strict):
    client = signed_in(strict)
    with listener() as lis:
        resp = client.post("/dns/zones/new", data=pdns_form(lis.port))
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422 and "SSLMANAGER_OUTBOUND_ALLOW_DNS" in html
        resp = client.post("/dns/zones/new", data=pdns_form(lis.port, api_url="http://[64:ff9b::a9fe:a9fe]/"))
        assert resp.status_code == 422 and "never a DNS server or DNS API" in resp.get_data(as_text=True)
        with strict.app_context():
            assert zones.all_zones() == []
            # Saved while allowed, the key still goes nowhere once the policy refuses the address.
            strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True
            zone = zones.add(TECH_ZONE, "powerdns", {k: v for k, v in pdns_form(lis.port).items()
                                                     if k not in ("name", "provider")})
            strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = False
            ok, message = zones.check(zone)
        assert not ok and "SSLMANAGER_OUTBOUND_ALLOW_DNS" in message
        assert lis.count() == 0


def test_the_dns_allow_list_lets_the_powerdns_api_in(strict):
    strict.config["SSLMANAGER_OUTBOUND_ALLOW_DNS"] = ["127.0.0.0/8"]
    with listener() as lis:
        resp = signed_in(strict).post("/dns/zones/new", data=pdns_form(lis.port))
        assert resp.status_code == 302, resp.get_data(as_text=True)
        assert lis.count() >= 1  # the health check after saving reached the API


def test_an_rfc2136_server_is_judged_when_saved_and_before_every_update(strict, lab_bind):
    options = {"server": f"127.0.0.1:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
               "tsig_secret": TSIG_SECRET, "tsig_algorithm": TSIG_ALGORITHM}
    resp = signed_in(strict).post("/dns/zones/new", data={"name": TECH_ZONE, "provider": "rfc2136", **options})
    assert resp.status_code == 422 and "SSLMANAGER_OUTBOUND_ALLOW_DNS" in resp.get_data(as_text=True)
    with listener() as lis, strict.app_context():
        strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True
        zone = zones.add(TECH_ZONE, "rfc2136", {**options, "server": f"localhost:{lis.port}"})
        strict.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = False
        ok, message = zones.check(zone)
        assert not ok and "SSLMANAGER_OUTBOUND_ALLOW_DNS" in message
        with pytest.raises(DnsError, match="SSLMANAGER_OUTBOUND_ALLOW_DNS"):
            zones.provider_for(TECH_ZONE).add_txt([(f"x.{TECH_ZONE}", "v")], 60)
        assert lis.count() == 0
    strict.config["SSLMANAGER_OUTBOUND_ALLOW_DNS"] = ["127.0.0.1/32"]
    with strict.app_context():
        ok, message = zones.check(zones.add(f"other.{TECH_ZONE}", "rfc2136", options))
    assert "SSLMANAGER_OUTBOUND_ALLOW_DNS" not in message


# -- the deploy probe --------------------------------------------------------------------------

def test_the_deploy_probe_may_reach_this_host_but_no_internal_or_metadata_address(strict):
    with strict.app_context():
        profile = CAProfile(name="Lab", module="custom", email="ops@example.com", dns_zone=TECH_ZONE)
        db.session().add(profile)
        db.session().flush()
        cert = Certificate(profile_id=profile.id, domains=["probe.example"], common_name="probe.example",
                           status="draft")
        db.session().add(cert)
        db.session().commit()
        deploy.update_settings(cert, {"deploy_probe": "127.0.0.1:443"})  # loopback: allowed by default
        for target in ("10.0.0.1:443", "169.254.169.254:80", "[::ffff:169.254.169.254]:80", "100.64.0.1:443"):
            with pytest.raises(ValidationError) as info:
                deploy.update_settings(cert, {"deploy_probe": target})
            assert "deploy_probe" in info.value.errors, target
        with listener() as lis:
            strict.config["SSLMANAGER_OUTBOUND_ALLOW_DEPLOY"] = []  # loopback taken away
            with pytest.raises(deploy.DeployError, match="SSLMANAGER_OUTBOUND_ALLOW_DEPLOY"):
                deploy.probe(f"127.0.0.1:{lis.port}", "probe.example", "01")
            assert lis.count() == 0
