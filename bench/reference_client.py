"""A minimal ACME DNS-01 client: the floor the issuance bench compares SSL Manager against.

It makes only the round trips RFC 8555 needs for one certificate with an existing account:

    HEAD newNonce (once per process)  POST newOrder  POST-as-GET each authorization
    ONE DNS UPDATE (TSIG) with every TXT value    POST every challenge, back to back
    poll the order (first poll after 15 ms, x1.5, at most 250 ms apart) until ready
    POST finalize   poll the order until valid   POST-as-GET the certificate
    ONE DNS UPDATE removing the values

Built on certbot's `acme` package (ClientNetwork for JWS, nonces and kid; messages for the
objects), not on SSL Manager's AcmeClient, so the floor shares no code with what it measures.
Where to write each TXT value (the target of `_acme-challenge.<base>`'s CNAME) is given, not
looked up: the client knows its own technical zone, as SSL Manager does from its database.
It does not check that the primary serves the TXT before answering: a NOERROR from the
primary (the server Pebble's resolver asks) already means it does.

    python -m bench.reference_client register --config cfg.json
    python -m bench.reference_client issue --config cfg.json NAME [NAME ...]

cfg.json: {"directory": URL, "ca_bundle": PEM path, "account_key": PEM path (made if missing),
"account_url": URL (from `register`), "email": ..., "dns": {"server": "127.0.0.1", "port": N,
"zone": "acme.tech.test", "key_name": ..., "secret": ..., "algorithm": "hmac-sha256"},
"ttl": 30, "targets": {"example.test": "label.acme.tech.test", ...}}

`issue` prints one JSON line: monotonic marks in seconds from just before newOrder
(order, txt, ready, valid, cert, clean), that instant as epoch0 (time.time()), the polls
made, and the badNonce retries.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update
import josepy as jose
from acme import challenges, messages
from acme.client import ClientNetwork
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

POLL_FIRST = 0.015
POLL_FACTOR = 1.5
POLL_CAP = 0.25
BAD_NONCE_TRIES = 8


class ReferenceClient:
    """One account at one CA, one DNS primary for the technical zone."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        key_path = Path(cfg["account_key"])
        if not key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        self.jwk = jose.JWKEC.load(key_path.read_bytes())
        account = None
        if cfg.get("account_url"):
            account = messages.RegistrationResource(uri=cfg["account_url"],
                                                    body=messages.Registration())
        self.net = ClientNetwork(self.jwk, account=account, alg=jose.ES256,
                                 verify_ssl=cfg.get("ca_bundle") or True,
                                 user_agent="sslmanager-bench-reference", timeout=10)
        self.directory = self.net.get(cfg["directory"]).json()
        d = cfg["dns"]
        self.dns_server, self.dns_port, self.zone = d["server"], int(d["port"]), d["zone"]
        self.tsig = dns.tsig.Key(d["key_name"], d["secret"], d.get("algorithm", "hmac-sha256"))
        self.bad_nonces = 0

    # -- ACME -------------------------------------------------------------------------------

    def post(self, url: str, obj=None):
        """JWS POST (obj None: POST-as-GET), retrying badNonce (Pebble rejects 5 % by default)."""
        for attempt in range(BAD_NONCE_TRIES):
            try:
                return self.net.post(url, obj, new_nonce_url=self.directory["newNonce"])
            except messages.Error as exc:
                # ClientNetwork.post already retried once on its own: count both.
                if exc.code != "badNonce" or attempt == BAD_NONCE_TRIES - 1:
                    raise
                self.bad_nonces += 2

    def register(self, email: str) -> str:
        """newAccount: creates the account, or returns the existing one for this key."""
        self.net.account = None
        body = messages.NewRegistration(contact=(f"mailto:{email}",) if email else (),
                                        terms_of_service_agreed=True)
        response = self.post(self.directory["newAccount"], body)
        url = response.headers["Location"]
        self.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
        return url

    def poll_order(self, url: str, done: tuple[str, ...]) -> tuple[messages.Order, int]:
        wait, polls = POLL_FIRST, 0
        while True:
            time.sleep(wait)
            order = messages.Order.from_json(self.post(url).json())
            polls += 1
            status = str(order.status.name if order.status else "")
            if status in done:
                return order, polls
            if status == "invalid":
                raise RuntimeError(f"order {url} invalid: {order.error}")
            wait = min(wait * POLL_FACTOR, POLL_CAP)

    # -- DNS --------------------------------------------------------------------------------

    def update(self, add=(), delete=()) -> None:
        msg = dns.update.UpdateMessage(self.zone, keyring=self.tsig)
        for name, value in delete:
            msg.delete(dns.name.from_text(name), _txt(value))
        for name, value in add:
            msg.add(dns.name.from_text(name), int(self.cfg.get("ttl", 30)), _txt(value))
        reply = dns.query.tcp(msg, self.dns_server, port=self.dns_port, timeout=10)
        if reply.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"DNS UPDATE refused: {dns.rcode.to_text(reply.rcode())}")

    # -- one certificate ----------------------------------------------------------------------

    def issue(self, names: list[str]) -> dict:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = make_csr(key, names)
        targets = self.cfg["targets"]
        marks: dict[str, float] = {}
        t0, epoch0 = time.monotonic(), time.time()
        mark = lambda what: marks.__setitem__(what, time.monotonic() - t0)  # noqa: E731
        new_order = messages.NewOrder(identifiers=[
            messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names])
        response = self.post(self.directory["newOrder"], new_order)
        order_url = response.headers["Location"]
        order = messages.Order.from_json(response.json())
        mark("order")
        answers, records = [], []
        for authz_url in order.authorizations:
            authz = messages.Authorization.from_json(self.post(authz_url).json())
            if str(authz.status.name) == "valid":
                continue
            challb = next(c for c in authz.challenges if isinstance(c.chall, challenges.DNS01))
            records.append((targets[authz.identifier.value], challb.chall.validation(self.jwk)))
            answers.append(challb)
        self.update(add=records)
        mark("txt")
        try:
            for challb in answers:
                self.post(challb.uri, challb.chall.response(self.jwk))
            order, ready_polls = self.poll_order(order_url, ("ready", "valid"))
            mark("ready")
            self.post(order.finalize, messages.CertificateRequest(csr=csr))
            order, valid_polls = self.poll_order(order_url, ("valid",))
            mark("valid")
            pem = self.post(order.certificate).content.decode()
            mark("cert")
        finally:
            if records:
                self.update(delete=records)
        mark("clean")
        if pem.count("BEGIN CERTIFICATE") < 1:
            raise RuntimeError("no certificate in the download")
        return {"ok": True, "names": names, "epoch0": epoch0, "marks": marks, "polls_ready": ready_polls,
                "polls_valid": valid_polls, "bad_nonces": self.bad_nonces,
                "txt_values": len(records)}


def _txt(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])


def make_csr(key: ec.EllipticCurvePrivateKey, names: list[str]) -> x509.CertificateSigningRequest:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0].lstrip("*."))]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("register", "issue"))
    parser.add_argument("--config", required=True)
    parser.add_argument("names", nargs="*")
    args = parser.parse_intermixed_args(argv)
    cfg = json.loads(Path(args.config).read_text())
    client = ReferenceClient(cfg)
    if args.command == "register":
        print(json.dumps({"account_url": client.register(cfg.get("email", ""))}))
        return 0
    if not args.names:
        parser.error("issue needs at least one name")
    print(json.dumps(client.issue(args.names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
