"""The ACME adapter against real Pebble, BIND and Unbound (tests/lab), and real sockets for
every network failure. CA misbehaviour Pebble 2.4 cannot produce (Retry-After, 429, 5xx,
ARI, profiles) is injected by a small HTTP proxy in front of a real Pebble."""
from __future__ import annotations

import ast
import base64
import datetime
import email.utils
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests
from acme.client import _renewal_info_path_component
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

from tests.lab.faultproxy import FaultProxy, running_proxy
from tests.lab.http import http_server
from tests.lab.proc import free_port
from tests.lab.servers import TECH_ZONE
from webapp.acme.transport import (MAX_ATTEMPTS, SERVER_ERROR_ATTEMPTS, fetch_directory,
                                    retry_after_seconds, server_retry_wait)
from webapp.acme.client import (AccountInfo, AcmeClient, Challenge, OrderInfo,
                                generate_account_key, probe_directory)
from webapp.errors import AcmeError, AcmeNetworkError, AcmeRateLimited

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "urn:ietf:params:acme:error:"


# -- helpers ---------------------------------------------------------------------------------

def make_csr(names: list[str]) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and a CSR for `names` (SANs only, empty subject)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def new_client(directory_url: str, ca_bundle: str | None, **kw) -> tuple[AcmeClient, list[str]]:
    """A client with a fresh account key whose timeline goes into the returned list."""
    lines: list[str] = []
    client = AcmeClient(directory_url, generate_account_key(), timeout=5, ca_bundle=ca_bundle,
                        log=lines.append, **kw)
    return client, lines


def deadline(seconds: float = 30) -> float:
    return time.monotonic() + seconds


@pytest.fixture
def dns_names(lab_bind) -> Iterator[list[str]]:
    """Names a test creates in BIND; every one is cleared afterwards (BIND is shared)."""
    names: list[str] = []
    yield names
    for name in names:
        lab_bind.clear(name)


def delegate_and_publish(bind, dns_names: list[str], domain: str,
                         challenges: list[Challenge]) -> str:
    """The acme-dns model: _acme-challenge.<domain> CNAME to a label in the technical zone,
    every TXT value added there in ONE update. Returns the label."""
    label = f"{uuid.uuid4().hex[:12]}.{TECH_ZONE}"
    dns_names += [f"_acme-challenge.{domain}", label]
    bind.set_cname(f"_acme-challenge.{domain}", f"{label}.")
    bind.update(TECH_ZONE, add=[(label, 60, "TXT", f'"{c.txt_value}"') for c in challenges])
    return label


def issue(client: AcmeClient, bind, dns_names: list[str], domain: str
          ) -> tuple[ec.EllipticCurvePrivateKey, str, list[Challenge]]:
    """One whole DNS-01 issuance of domain + *.domain; returns key, full chain, challenges."""
    names = [domain, f"*.{domain}"]
    key, csr_pem = make_csr(names)
    order = client.new_order(names)
    challenges = client.challenges(order)
    delegate_and_publish(bind, dns_names, domain, challenges)
    client.answer_challenges(challenges)
    order = client.wait_order_ready(order.url, deadline=deadline())
    order = client.finalize(order, csr_pem, deadline=deadline())
    fullchain, _alternates = client.download(order)
    return key, fullchain, challenges


def load_chain(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def verify(chain: list[x509.Certificate], root: x509.Certificate,
           name: str) -> list[x509.Certificate]:
    """Path-validate chain[0] for `name` up to `root` (cryptography's web PKI verifier)."""
    verifier = (verification.PolicyBuilder().store(verification.Store([root]))
                .time(datetime.datetime.now(datetime.timezone.utc))
                .build_server_verifier(x509.DNSName(name)))
    return verifier.verify(chain[0], chain[1:])


# -- local servers for failure diagnosis and fault injection ----------------------------------

@pytest.fixture
def proxy(lab_pebble) -> Iterator[FaultProxy]:
    with running_proxy(lab_pebble) as fault_proxy:
        yield fault_proxy

# -- directory -------------------------------------------------------------------------------

def test_probe_directory_returns_endpoints_and_meta(lab_pebble):
    info = probe_directory(lab_pebble.directory_url, timeout=5, ca_bundle=lab_pebble.ca_bundle)
    assert info.url == lab_pebble.directory_url
    for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert info.endpoints[name].startswith(f"https://127.0.0.1:{lab_pebble.port}/")
    assert "meta" not in info.endpoints
    assert info.meta["termsOfService"]


def test_probe_directory_names_unresolvable_host():
    with pytest.raises(AcmeNetworkError) as caught:
        probe_directory("https://nonexistent.invalid/dir", timeout=5)
    assert "could not resolve host nonexistent.invalid" in caught.value.message
    assert caught.value.step == "fetch directory"
    assert caught.value.url == "https://nonexistent.invalid/dir"


def test_probe_directory_names_refused_connection():
    url = f"https://127.0.0.1:{free_port()}/dir"  # nothing listens there
    with pytest.raises(AcmeNetworkError) as caught:
        probe_directory(url, timeout=5)
    assert "connection refused" in caught.value.message
    assert (caught.value.step, caught.value.url) == ("fetch directory", url)


def test_probe_directory_says_to_set_ca_bundle_when_tls_is_untrusted(lab_pebble):
    with pytest.raises(AcmeNetworkError) as caught:
        probe_directory(lab_pebble.directory_url, timeout=5)
    err = caught.value
    assert "TLS verification failed" in err.message
    assert "CA bundle" in err.hint
    assert "certificate verify failed" in err.detail


def test_probe_directory_says_timed_out_and_to_raise_api_timeout():
    release = threading.Event()

    def slow(_req):
        release.wait(5)  # far longer than the client's timeout; released at teardown
        return 200, {}, b"{}"

    try:
        with http_server(slow) as base:
            started = time.monotonic()
            with pytest.raises(AcmeNetworkError) as caught:
                probe_directory(f"{base}/dir", timeout=0.3)
            assert time.monotonic() - started < 2
    finally:
        release.set()
    assert "timed out after 0.3 seconds" in caught.value.message
    assert "API Timeout" in caught.value.hint


def test_probe_directory_quotes_http_status_and_body():
    def broken(_req):
        return 500, {"Content-Type": "text/plain"}, b"upstream exploded\n  badly"

    with http_server(broken) as base, pytest.raises(AcmeError) as caught:
        probe_directory(f"{base}/dir", timeout=5)
    err = caught.value
    assert not isinstance(err, AcmeNetworkError)
    assert (err.message, err.status) == ("HTTP status 500", 500)
    assert err.detail == "upstream exploded badly"
    assert err.step == "fetch directory" and err.url == f"{base}/dir"


_lookups: list | None = None  # host names passed to getaddrinfo while recording


def _audit(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and _lookups is not None:
        _lookups.append(args[0])


sys.addaudithook(_audit)  # a real observation of every name lookup, no mocking


def test_a_judged_client_dials_the_judged_address_and_never_looks_the_name_up_again(lab_pebble):
    global _lookups
    port = lab_pebble.directory_url.split(":")[2].split("/")[0]
    judged = []

    def judge(url):
        judged.append(url)
        return "127.0.0.1", None
    client, _ = new_client(f"https://localhost:{port}/dir", lab_pebble.ca_bundle, judge=judge)
    _lookups = []
    try:
        account = client.register("ops@customer.test")
        order = client.new_order(["customer.test"])
    finally:
        looked_up, _lookups = _lookups, None
    assert account.url.startswith(f"https://localhost:{port}/") and order.status == "pending"
    assert "localhost" not in looked_up  # TLS still checked the name: Pebble's certificate is for it
    assert judged == [f"https://localhost:{port}/dir"]  # one host, judged once


def test_a_host_the_judge_refuses_is_never_contacted_and_the_error_says_why(lab_pebble):
    client, _ = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle,
                           judge=lambda url: (None, "ca.example resolves to 169.254.169.254, never a CA"))
    with pytest.raises(AcmeError) as caught:
        client.register("ops@customer.test")
    assert not isinstance(caught.value, AcmeNetworkError)  # not worth retrying
    assert caught.value.step == "fetch directory" and "169.254.169.254" in caught.value.message


def test_directory_503_with_a_short_retry_after_is_waited_out_within_the_call():
    answers = [(503, {"Retry-After": "1"}, b"busy"), (200, {"Content-Type": "application/json"},
               b'{"newNonce": "https://x/n", "newAccount": "https://x/a", "newOrder": "https://x/o"}')]
    lines = []
    with http_server(lambda _req: answers.pop(0)) as base:
        started = time.monotonic()
        info = fetch_directory(f"{base}/dir", timeout=5, log=lines.append)
    assert info.endpoints["newOrder"] == "https://x/o"
    assert time.monotonic() - started >= 1  # never sooner than the CA asked
    assert lines == [f"fetch directory: GET {base}/dir -> HTTP status 503, retrying in 1.00s (attempt 2)"]


def test_directory_503_with_a_retry_after_longer_than_the_timeout_raises_it_for_the_next_attempt():
    with http_server(lambda _req: (503, {"Retry-After": "120"}, b"maintenance")) as base, \
            pytest.raises(AcmeError) as caught:
        fetch_directory(f"{base}/dir", timeout=5)
    err = caught.value
    assert (err.status, err.retry_after) == (503, 120) and "in 120 seconds" in err.hint


def test_directory_429_without_retry_after_is_not_asked_again_at_once():
    requests_seen = []

    def limited(req):
        requests_seen.append(req)
        return 429, {"Content-Type": "application/problem+json"}, b'{"type": "rateLimited"}'
    with http_server(limited) as base, pytest.raises(AcmeRateLimited) as caught:
        fetch_directory(f"{base}/dir", timeout=5)
    assert len(requests_seen) == 1 and caught.value.status == 429
    assert "rate limiting" in caught.value.hint


@pytest.mark.parametrize("status, retry_after, attempt, deadline_in, rate_limited, expected", [
    (503, None, 1, 60, None, 0.1),      # a 5xx without Retry-After: short doubling backoff
    (503, None, 3, 60, None, 0.4),
    (503, None, SERVER_ERROR_ATTEMPTS, 60, None, None),
    (503, 2.0, SERVER_ERROR_ATTEMPTS, 60, None, 2.0),  # the CA said when: never sooner, more tries
    (503, 120.0, 1, 5, None, None),     # does not fit before the deadline: raise it for later
    (429, None, 1, 60, None, None),     # a limit without a time: not asked again at once
    (429, 1.0, 1, 60, None, 1.0),
    (400, None, 1, 60, True, None),     # rateLimited problem in a 400: still a limit, no time
    (400, None, 1, 60, None, None),     # an answer, not a failure
    (503, 1.0, MAX_ATTEMPTS, 60, None, None),
])
def test_one_wait_rule_for_failing_and_limiting_cas(status, retry_after, attempt, deadline_in,
                                                     rate_limited, expected):
    wait = server_retry_wait(status, retry_after, attempt=attempt,
                             deadline=time.monotonic() + deadline_in, rate_limited=rate_limited)
    assert wait == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("ctype, body, says", [
    ("application/json", b'{"status": "ok", "newNonce": "https://x/nonce"}',
     "no newAccount, newOrder"),
    ("text/html", b"<html>welcome</html>", "not JSON (Content-Type: text/html)"),
])
def test_probe_directory_rejects_what_is_not_an_acme_directory(ctype, body, says):
    with http_server(lambda _req: (200, {"Content-Type": ctype}, body)) as base:
        with pytest.raises(AcmeError) as caught:
            probe_directory(f"{base}/dir", timeout=5)
    assert caught.value.message == "not an ACME directory"
    assert says in caught.value.detail


# -- account ---------------------------------------------------------------------------------

def test_register_twice_with_one_key_returns_the_same_account(lab_pebble):
    key = generate_account_key()
    first = AcmeClient(lab_pebble.directory_url, key, timeout=5, ca_bundle=lab_pebble.ca_bundle)
    account = first.register("ops@customer.test")
    assert account.status == "valid" and account.contact == ("mailto:ops@customer.test",)
    again = AcmeClient(lab_pebble.directory_url, key, timeout=5, ca_bundle=lab_pebble.ca_bundle)
    assert again.register("ops@customer.test").url == account.url


def test_update_contact_replaces_the_email(lab_pebble):
    client, lines = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("old@customer.test")
    assert client.update_contact("new@customer.test").contact == ("mailto:new@customer.test",)
    assert lines[-1].startswith("update account: POST ")


def test_register_without_eab_where_ca_requires_it_says_eab_missing(lab_pebble_eab):
    client, _ = new_client(lab_pebble_eab.directory_url, lab_pebble_eab.ca_bundle)
    with pytest.raises(AcmeError) as caught:
        client.register("ops@customer.test")
    err = caught.value
    assert "EAB required but missing" in err.message
    assert err.problem_type == PROBLEM + "externalAccountRequired"
    assert "externalAccountBinding" in err.detail  # the CA's own words
    assert err.step == "new account"


def test_register_with_wrong_eab_hmac_quotes_the_ca(lab_pebble_eab):
    client, _ = new_client(lab_pebble_eab.directory_url, lab_pebble_eab.ca_bundle)
    wrong = base64.urlsafe_b64encode(b"\x00" * 32).rstrip(b"=").decode()
    with pytest.raises(AcmeError) as caught:
        client.register("ops@customer.test", eab_kid="kid-1", eab_hmac=wrong)
    err = caught.value
    assert err.message == "the CA rejected the External Account Binding"
    assert err.problem_type == PROBLEM + "unauthorized"
    assert "external account binding JWS verification error" in err.detail
    assert wrong not in str(err)


def test_register_with_right_eab_creates_a_valid_account(lab_pebble_eab):
    client, lines = new_client(lab_pebble_eab.directory_url, lab_pebble_eab.ca_bundle)
    account = client.register("ops@customer.test", eab_kid="kid-2",
                              eab_hmac=lab_pebble_eab.eab_keys["kid-2"])
    assert isinstance(account, AccountInfo) and account.status == "valid"
    assert client.account_url == account.url
    assert lines[-1].endswith("(valid, EAB)")


# -- issuance --------------------------------------------------------------------------------

def test_issues_apex_and_wildcard_through_cname_delegation(lab_pebble, lab_bind, dns_names):
    client, lines = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("ops@customer.test")
    key, fullchain, challenges = issue(client, lab_bind, dns_names, "customer.test")

    # apex and wildcard share one TXT name with two different values
    assert {c.identifier for c in challenges} == {"customer.test", "*.customer.test"}
    assert {c.txt_name for c in challenges} == {"_acme-challenge.customer.test"}
    assert len({c.txt_value for c in challenges}) == 2
    chain = load_chain(fullchain)
    leaf = chain[0]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"customer.test", "*.customer.test"}
    root = x509.load_pem_x509_certificate(lab_pebble.root_pem().encode())
    assert verify(chain, root, "www.customer.test")[-1] == root
    steps = [line.split(":", 1)[0] for line in lines if "retrying" not in line]  # 5% badNonce
    assert steps == ["fetch directory", "new account", "new order", "get authorization",
                     "get authorization", "answer challenge", "answer challenge",
                     "wait for validation", "finalize", "wait for certificate",
                     "download certificate"]


def test_issues_when_pebble_rejects_half_the_nonces(pebble_factory, lab_bind, dns_names):
    pebble = pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "50"})
    client, _ = new_client(pebble.directory_url, pebble.ca_bundle)
    client.register("ops@other.test")
    key, fullchain, _ = issue(client, lab_bind, dns_names, "other.test")
    leaf = load_chain(fullchain)[0]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    # Whether our own loop had to act is chance (acme retries once itself): check the setup.
    assert "Configured to reject 50% of good nonces" in pebble.log_text()


def test_download_returns_every_alternate_chain_whole(pebble_factory, lab_bind, dns_names):
    pebble = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "2", "PEBBLE_CHAIN_LENGTH": "3"})
    client, _ = new_client(pebble.directory_url, pebble.ca_bundle)
    client.register("ops@customer.test")
    names = ["customer.test", "*.customer.test"]
    _, csr_pem = make_csr(names)
    order = client.new_order(names)
    challenges = client.challenges(order)
    delegate_and_publish(lab_bind, dns_names, "customer.test", challenges)
    client.answer_challenges(challenges)
    order = client.finalize(client.wait_order_ready(order.url, deadline=deadline()), csr_pem,
                            deadline=deadline())
    fullchain, alternates = client.download(order)
    assert len(alternates) == 2
    roots = {r.subject: r for r in (x509.load_pem_x509_certificate(pebble.root_pem(i).encode())
                                    for i in range(3))}
    chains = [load_chain(pem) for pem in (fullchain, *alternates)]
    assert len({chain[0].serial_number for chain in chains}) == 1  # one leaf, three paths
    assert len({chain[-1].issuer for chain in chains}) == 3        # ...to three roots
    for chain in chains:
        assert len(chain) == 4  # stored whole: leaf and all three intermediates
        assert verify(chain, roots[chain[-1].issuer], "customer.test")[-1] in roots.values()
    assert client.download(order, alternates=False)[1] == []


def test_failed_validation_names_the_identifier_and_quotes_the_ca(lab_pebble, lab_bind,
                                                                   dns_names):
    client, _ = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("ops@wild.test")
    order = client.new_order(["wild.test"])
    challenges = client.challenges(order)
    delegate_and_publish(lab_bind, dns_names, "wild.test", [])  # CNAME to a label with no TXT
    client.answer_challenges(challenges)
    with pytest.raises(AcmeError) as caught:
        client.wait_order_ready(order.url, deadline=deadline())
    err = caught.value
    assert err.message == "validation of wild.test failed (dns-01)"
    assert err.problem_type.startswith(PROBLEM)
    assert "TXT" in err.detail
    assert err.url == challenges[0].authz_url and err.step == "wait for validation"


def test_wait_order_ready_gives_up_at_the_deadline(lab_pebble):
    client, _ = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("ops@caa.test")
    order = client.new_order(["caa.test"])  # never answered: stays pending
    started = time.monotonic()
    with pytest.raises(AcmeError) as caught:
        client.wait_order_ready(order.url, deadline=deadline(0.3))
    assert time.monotonic() - started < 1.5  # stops before a sleep would cross the deadline
    assert "still pending at the deadline" in caught.value.message


def test_challenges_skips_authorizations_already_valid(pebble_factory, lab_bind, dns_names):
    pebble = pebble_factory(env={"PEBBLE_AUTHZREUSE": "100"})
    client, lines = new_client(pebble.directory_url, pebble.ca_bundle)
    client.register("ops@customer.test")
    issue(client, lab_bind, dns_names, "customer.test")
    order = client.new_order(["customer.test", "*.customer.test", "www.customer.test"])
    assert [c.identifier for c in client.challenges(order)] == ["www.customer.test"]
    assert sum("already valid" in line for line in lines) == 2


def test_revoke_then_revoking_again_quotes_already_revoked(lab_pebble, lab_bind, dns_names):
    client, lines = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("ops@customer.test")
    _, fullchain, _ = issue(client, lab_bind, dns_names, "customer.test")
    client.revoke(fullchain, reason=4)
    assert lines[-1].startswith("revoke certificate: POST ")
    with pytest.raises(AcmeError) as caught:
        client.revoke(fullchain, reason=4)
    assert caught.value.problem_type == PROBLEM + "alreadyRevoked"


def test_new_order_with_a_profile_the_ca_lacks_is_refused_before_sending(lab_pebble):
    client, _ = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("ops@customer.test")
    with pytest.raises(AcmeError) as caught:
        client.new_order(["customer.test"], profile="shortlived")
    assert "no certificate profile named 'shortlived'" in caught.value.message


def test_renewal_info_is_none_when_the_directory_has_no_renewal_info(lab_pebble, lab_bind,
                                                                      dns_names):
    client, _ = new_client(lab_pebble.directory_url, lab_pebble.ca_bundle)
    client.register("ops@customer.test")
    _, fullchain, _ = issue(client, lab_bind, dns_names, "customer.test")
    assert client.renewal_info(fullchain) is None


# -- CA misbehaviour through the proxy -------------------------------------------------------

def test_server_error_with_retry_after_is_retried_within_the_deadline(proxy):
    client, lines = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    proxy.inject("POST", "/order-plz", 503, headers={"Retry-After": "1"},
                 problem={"type": PROBLEM + "serverInternal", "detail": "maintenance"})
    started = time.monotonic()
    order = client.new_order(["customer.test"])
    assert 1 <= time.monotonic() - started < 3  # waited exactly as asked, not more
    assert isinstance(order, OrderInfo) and order.status == "pending"
    assert any("HTTP 503" in line and "retrying in 1.00s" in line for line in lines)


def test_server_error_without_retry_after_is_retried_with_backoff(proxy):
    client, _ = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    proxy.inject("POST", "/order-plz", 500, times=2)  # HTML bodies, no problem document
    assert client.new_order(["customer.test"]).status == "pending"


def test_rate_limit_longer_than_the_deadline_raises_with_retry_after(proxy):
    client, _ = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    proxy.inject("POST", "/order-plz", 429, headers={"Retry-After": "3600"},
                 problem={"type": PROBLEM + "rateLimited", "detail": "too many new orders"})
    started = time.monotonic()
    with pytest.raises(AcmeRateLimited) as caught:
        client.new_order(["customer.test"])
    assert time.monotonic() - started < 3  # raised at once, did not sit out the hour
    err = caught.value
    assert err.retry_after == 3600 and err.status == 429
    assert (err.step, err.detail) == ("new order", "too many new orders")
    assert err.problem_type == PROBLEM + "rateLimited"


def test_polls_never_come_sooner_than_retry_after(proxy):
    client, _ = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    order = client.new_order(["customer.test"])  # never answered: stays pending
    proxy.extra_headers["/my-order/"] = {"Retry-After": "1"}
    with pytest.raises(AcmeError) as caught:
        client.wait_order_ready(order.url, deadline=deadline(1.5))
    polls = [path for _, path, status in proxy.answered
             if path.startswith("/my-order/") and status == 200]  # not the badNonce retries
    assert len(polls) == 2  # at ~30 ms, then 1 s later; the next would pass the deadline
    assert caught.value.retry_after == 1


@pytest.mark.parametrize("header, low, high", [
    ("120", 120, 120),
    ("http-date GMT", 59, 61),
    ("http-date +0200", 59, 61),  # the same instant written in another zone
    ("soon", None, None),
    (None, None, None),
])
def test_retry_after_reads_seconds_and_http_dates_in_any_zone(header, low, high):
    in_a_minute = (datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
                   + datetime.timedelta(seconds=61))
    if header == "http-date GMT":
        header = email.utils.format_datetime(in_a_minute, usegmt=True)
    elif header == "http-date +0200":
        plus2 = datetime.timezone(datetime.timedelta(hours=2))
        header = email.utils.format_datetime(in_a_minute.astimezone(plus2))
    response = requests.Response()
    if header is not None:
        response.headers["Retry-After"] = header
    got = retry_after_seconds(response)
    assert got is None if low is None else low <= got <= high


def test_bad_nonce_is_retried_more_than_once(proxy):
    client, lines = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    proxy.inject("POST", "/sign-me-up", 400, times=5,
                 problem={"type": PROBLEM + "badNonce", "detail": "JWS has an invalid nonce"})
    assert client.register("ops@customer.test").status == "valid"
    assert sum("badNonce" in line for line in lines) >= 2


def test_a_problem_document_sent_with_409_keeps_its_type(proxy):
    # acme's ClientNetwork raises a bare ConflictError for any 409; a CA refusing `replaces`
    # (RFC 9773 alreadyReplaced) answers 409 with a problem document, which must survive.
    client, _ = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    proxy.inject("POST", "/order-plz", 409, problem={
        "type": PROBLEM + "alreadyReplaced", "detail": "serial 1234 was already replaced"})
    with pytest.raises(AcmeError) as refused:
        client.new_order(["customer.test"])
    assert refused.value.problem_type == PROBLEM + "alreadyReplaced"
    assert refused.value.status == 409
    assert refused.value.detail == "serial 1234 was already replaced"
    assert client.new_order(["customer.test"]).status == "pending"  # the nonce was kept


def test_new_order_sends_an_offered_profile(proxy):
    proxy.meta_extra = {"profiles": {"shortlived": "6-day certificates"}}
    client, lines = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    client.new_order(["customer.test"], profile="shortlived")
    assert proxy.posted_payloads("/order-plz")[-1]["profile"] == "shortlived"
    assert lines[-1].endswith("profile shortlived)")


def test_renewal_info_returns_the_suggested_window(proxy, lab_bind, dns_names):
    proxy.directory_extra = {"renewalInfo": "/ari"}
    client, _ = new_client(f"{proxy.base}/dir", proxy.pebble.ca_bundle)
    client.register("ops@customer.test")
    _, fullchain, _ = issue(client, lab_bind, dns_names, "customer.test")
    leaf = load_chain(fullchain)[0]
    # acme's own certID builder is the oracle for ours
    path = f"/ari/{_renewal_info_path_component(leaf)}"
    window = {"start": "2030-01-01T00:00:00Z", "end": "2030-01-02T00:00:00Z"}
    proxy.ari[path] = ({"suggestedWindow": window, "explanationURL": "https://ca.test/why"},
                       {"Retry-After": "21600"})
    info = client.renewal_info(fullchain)
    utc = datetime.timezone.utc
    assert info == {"suggestedWindow": {"start": datetime.datetime(2030, 1, 1, tzinfo=utc),
                                        "end": datetime.datetime(2030, 1, 2, tzinfo=utc)},
                    "explanationURL": "https://ca.test/why", "retryAfter": 21600.0}


# -- layering --------------------------------------------------------------------------------

def test_acme_layer_never_imports_flask():
    files = list((ROOT / "webapp" / "acme").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0].startswith("flask") for n in names), path
