"""Pytest plugin for the lab: load with `pytest_plugins = ["tests.lab.fixtures"]` or `-p`.

Session-scoped servers are shared by every test, so tests must clean up the DNS names they
touch (Bind.clear) and must not rely on Pebble state left by others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from .oidc import OidcProvider
from .servers import LAB_EAB_KEYS, Acme2Certifier, Bind, Nginx, Pebble, Postgres, Unbound

T = TypeVar("T")


def _started_each(build: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """A factory fixture's body: yields make(*args, **kwargs) -> build(...) started; every
    server it made is stopped at test end, the last first."""
    started: list = []

    def make(*args, **kwargs) -> T:
        server = build(*args, **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


def _resolver_address(unbound: Unbound) -> str:
    """host:port form that Pebble's -dnsserver expects."""
    return f"{unbound.host}:{unbound.port}"


@pytest.fixture(scope="session")
def lab_bind() -> Iterator[Bind]:
    """Authoritative BIND9 with TECH_ZONE and CUSTOMER_ZONES, dynamic via TSIG."""
    with Bind() as bind:
        yield bind


@pytest.fixture(scope="session")
def lab_unbound(lab_bind: Bind) -> Iterator[Unbound]:
    """Recursive Unbound stubbing every lab_bind zone to lab_bind."""
    with Unbound(lab_bind) as unbound:
        yield unbound


@pytest.fixture(scope="session")
def lab_pebble(lab_unbound: Unbound) -> Iterator[Pebble]:
    """Pebble validating DNS-01 through lab_unbound; no EAB."""
    with Pebble(_resolver_address(lab_unbound)) as pebble:
        yield pebble


@pytest.fixture(scope="session")
def lab_pebble_eab(lab_unbound: Unbound) -> Iterator[Pebble]:
    """Pebble requiring External Account Binding, kids "kid-1" and "kid-2" (LAB_EAB_KEYS)."""
    with Pebble(_resolver_address(lab_unbound), eab_keys=LAB_EAB_KEYS) as pebble:
        yield pebble


@pytest.fixture(scope="session")
def lab_postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster (trust auth, user postgres)."""
    with Postgres() as postgres:
        yield postgres


@pytest.fixture
def pebble_factory(lab_unbound: Unbound) -> Iterator[Callable[..., Pebble]]:
    """Callable(**Pebble kwargs) -> a started extra Pebble, stopped at test end.

    dns_server defaults to lab_unbound, e.g. pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "50"}).
    """
    yield from _started_each(lambda dns_server=None, **kwargs: Pebble(
        dns_server or _resolver_address(lab_unbound), **kwargs))


@pytest.fixture(scope="session")
def lab_a2c(lab_bind: Bind) -> Iterator[Acme2Certifier]:
    """acme2certifier with default settings (profiles classic/shortlived, no EAB), validating
    DNS-01 through its own Unbound on 127.X.Y.Z:53. Shared: tests that flip its switches,
    forget accounts or restart it use a2c_factory instead."""
    with Acme2Certifier(lab_bind) as a2c:
        yield a2c


@pytest.fixture
def a2c_factory(lab_bind: Bind) -> Iterator[Callable[..., Acme2Certifier]]:
    """Callable(**Acme2Certifier options) -> a started acme2certifier, stopped at test end,
    e.g. a2c_factory(cert_validity_days=2, retry_after_timeout=60, eab_keys=LAB_EAB_KEYS)."""
    yield from _started_each(lambda **options: Acme2Certifier(lab_bind, **options))


@pytest.fixture
def oidc_factory() -> Iterator[Callable[..., OidcProvider]]:
    """Callable(redirect_uris=[...], **OidcProvider options) -> a started OpenID Provider
    (npm oidc-provider; users vera in ssl-viewers, otto in ssl-operators), stopped at test end.
    Per test: the relying party's redirect URI names the live server's random port."""
    yield from _started_each(OidcProvider)


@pytest.fixture
def pg_database(lab_postgres: Postgres) -> Iterator[str]:
    """SQLAlchemy URL of a fresh empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = lab_postgres.create_database(name)
    yield url
    lab_postgres.drop_database(name)


@pytest.fixture(scope="session")
def lab_zerossl_api(lab_pebble_eab: Pebble):
    """ZeroSSL's EAB REST endpoints, served locally, handing out lab_pebble_eab's keys."""
    from .zerossl import ZeroSSLApi
    with ZeroSSLApi(lab_pebble_eab.eab_keys) as api:
        yield api


@pytest.fixture
def nginx_factory() -> Iterator[Callable[..., Nginx]]:
    """Callable(cert_dir=None) -> a started nginx (Debian's) serving TLS on a free loopback
    port from cert_dir/fullchain.pem and privkey.pem; stopped at test end."""
    yield from _started_each(Nginx)
