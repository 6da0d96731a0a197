"""The lab's servers, as plain classes (no pytest): each has start()/stop() and is a context
manager. Implementations live in proc.py, dnsservers.py, pebble.py, acme2certifier.py and
postgres.py.

Topology (every port is a free loopback port, UDP and TCP for DNS):

    app --ACME/HTTPS--> Pebble --DNS-01 lookups--> Unbound --stub zones--> Bind
    app --ACME/HTTPS--> acme2certifier --DNS-01--> its own Unbound on 127.X.Y.Z:53 --> Bind
    app --RFC 2136 + TSIG (acme-key)-----------------------------------> Bind

Pitfalls met while building it (keep these in mind when changing anything here):
- Pebble's -dnsserver must be a RECURSIVE resolver. Pointed at BIND (recursion no) it gets
  the CNAME of _acme-challenge.<customer> but never the TXT in acme.tech.test, and reports
  "No TXT records found". Hence Unbound in between.
- Unbound answers NXDOMAIN for the special-use `test.` TLD unless `local-zone: "test."
  nodefault`; it will not query 127.0.0.1 unless `do-not-query-localhost: no`; its cache
  would serve stale TXT between test steps unless cache-max-ttl and cache-max-negative-ttl
  are 0. module-config "iterator" drops the validator: the lab zones are unsigned and
  no real root is reachable to chain to.
- dnspython: rdata text parsed with relativize=True (the default) comes out relative to the
  root, and an UpdateMessage then appends the zone to it: a CNAME to x.acme.tech.test became
  x.acme.tech.test.customer.test. Bind.update parses with relativize=False.
- BIND: because Debian ships /etc/bind/rndc.key, every named opens an rndc channel on the
  fixed 127.0.0.1:953 unless `controls { };`. named -u root still drops capabilities (it
  cannot even read the bind-owned rndc.key), hence the world-writable workdir for journals.
  `minimal-responses yes` keeps NS records (naming port-53 servers) out of answers.
- Pebble needs its own listener certificate; we make a tiny P-256 CA + leaf with
  cryptography (no openssl call) and Pebble.ca_bundle is that CA's PEM: pass it as
  `verify=` to requests. Pebble makes new issuance roots at every start, so fetch
  root_pem() from the running instance, never cache it across sessions.
- Pebble defaults: 5% of nonces rejected (PEBBLE_WFE_NONCEREJECT; clients must retry
  badNonce), 50% authz reuse (we set PEBBLE_AUTHZREUSE=0), a random 0-15 s validation
  sleep (we set PEBBLE_VA_NOSLEEP=1). EAB MAC keys must be unpadded base64url.
- PostgreSQL refuses to run as root: as root we drop to the `postgres` user via Popen(user=)
  and chown the workdir. SIGTERM is a "smart" shutdown that waits for clients, so stop()
  sends SIGINT (fast shutdown).
- acme2certifier (second, independent ACME server: ARI, profiles, EAB, caaIdentities) runs in
  its own venv and asks DNS on port 53 only: see the pitfalls in acme2certifier.py.
- Ports come from 20000-32767, below Linux's ephemeral range, so client sockets cannot grab
  them between free_port() and the server's bind; Unbound's random source ports are kept
  above 32767 for the same reason.
"""

from .acme2certifier import A2C_VENV, DEFAULT_PROFILES, Acme2Certifier
from .dnsservers import (
    CUSTOMER_ZONES,
    TECH_ZONE,
    TSIG_ALGORITHM,
    TSIG_KEY_NAME,
    TSIG_SECRET,
    Bind,
    DNSUpdateError,
    Unbound,
    txt_values,
)
from .nginx import Nginx
from .pebble import LAB_EAB_KEYS, PEBBLE_DEFAULT_ENV, Pebble, eab_mac_key
from .postgres import Postgres
from .proc import LabServerError, free_loopback_address, free_port

__all__ = [
    "Nginx",
    "A2C_VENV",
    "DEFAULT_PROFILES",
    "Acme2Certifier",
    "CUSTOMER_ZONES",
    "TECH_ZONE",
    "TSIG_ALGORITHM",
    "TSIG_KEY_NAME",
    "TSIG_SECRET",
    "Bind",
    "DNSUpdateError",
    "Unbound",
    "txt_values",
    "LAB_EAB_KEYS",
    "PEBBLE_DEFAULT_ENV",
    "Pebble",
    "eab_mac_key",
    "Postgres",
    "LabServerError",
    "free_loopback_address",
    "free_port",
]
