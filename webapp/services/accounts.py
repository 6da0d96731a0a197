"""A CA profile's plugin, ACME client and account: the plugin with this deployment's
overrides, a client for the profile's CA, and the profile's one ACME account, made under a
lock that holds across threads, processes and nodes, and repaired when the CA forgets it."""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from flask import current_app

from .. import db
from ..acme.client import AcmeClient, generate_account_key
from ..ca_plugins import CAPlugin, ProfileView, Registry, discover
from ..errors import AcmeError, ConfigError
from ..models import CAProfile
from . import audit, claims
from .addresses import checked_address


def registry() -> Registry:
    """The CA modules, discovered once per app."""
    state = current_app.extensions["sslmanager"]
    if "ca_registry" not in state.extra:
        state.extra["ca_registry"] = discover()
    return state.extra["ca_registry"]


def plugin_for(profile: CAProfile) -> CAPlugin:
    """The profile's CA module, with this deployment's overrides."""
    try:
        return registry().get(profile.module, current_app.config["SSLMANAGER_CA_OVERRIDES"].get(profile.module))
    except KeyError:
        reason = registry().unavailable.get(profile.module, "not installed")
        raise ConfigError(f"CA module {profile.module!r} is unavailable: {reason}",
                          hint="Install or fix the CA module, or pick another module.") from None


def view_of(profile: CAProfile) -> ProfileView:
    return ProfileView(ca_key=profile.ca_key, directory_url=profile.directory_url,
                       email=profile.email, eab_kid=profile.eab_kid,
                       eab_hmac=profile.eab_hmac or "", api_key=profile.api_key or "")


def directory_url(profile: CAProfile) -> str:
    return plugin_for(profile).directory_url(view_of(profile))


def ca_bundle_path(profile: CAProfile) -> str | None:
    """A file with the profile's CA bundle (requests wants a path), else the module default."""
    if not profile.ca_bundle:
        return plugin_for(profile).default_ca_bundle()
    folder = os.path.join(current_app.extensions["sslmanager"].instance_path, "ca-bundles")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, hashlib.sha256(profile.ca_bundle.encode()).hexdigest()[:16] + ".pem")
    if not os.path.exists(path):
        # A temporary name of its own per writer (threads of one process too), then an atomic
        # rename: writers racing on a first use all leave the same complete file (mode 0600).
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path), suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(profile.ca_bundle.strip() + "\n")
        os.replace(tmp, path)
    return path


def acme_client(profile: CAProfile, *, account_key: str, account_url: str = "",
                log=None) -> AcmeClient:
    """An ACME client for the profile's CA with the given account key."""
    return AcmeClient(directory_url(profile), account_key.encode(), timeout=profile.api_timeout,
                      ca_bundle=ca_bundle_path(profile), account_url=account_url or None, log=log,
                      judge=checked_address)


@contextmanager
def account_lock(profile: CAProfile) -> Iterator[None]:
    """One caller at a time makes or repairs the profile's ACME account, across threads,
    processes and nodes (a lease in the database). The others wait here, then see what it
    made: without this, eight first orders at once registered four accounts with four keys,
    and the key and URL that ended up stored came from different threads."""
    name = f"acme-account:{profile.id}"
    holder = f"{claims.HOLDER}:{threading.get_ident()}"
    hold = profile.api_timeout * 4 + 30  # a registration: directory, EAB, newAccount, retries
    db.session().commit()  # keep the caller's changes: refresh() below reloads the row
    give_up = time.monotonic() + 2 * hold
    wait = 0.01
    while not claims.take_lease(name, hold, holder):
        if time.monotonic() > give_up:
            raise AcmeError("another process has been registering this profile's ACME account "
                            f"for over {2 * hold} seconds", step="new account",
                            hint="try again; if it persists, restart the stuck process")
        time.sleep(wait)
        wait = min(wait * 2, 0.5)
    try:
        db.session().refresh(profile)
        yield
    finally:
        claims.end_lease(name, holder)


def _has_account(profile: CAProfile, url: str) -> bool:
    return bool(profile.account_key and profile.account_url and profile.account_directory == url)


def ensure_account(profile: CAProfile, *, verify: bool = True) -> None:
    """Register (or find) the profile's ACME account; keep its key; update its contact.
    verify=False (issuance): an account another caller made meanwhile is used as it is."""
    with account_lock(profile):
        url = directory_url(profile)
        if not verify and _has_account(profile, url):
            return
        if not profile.account_key:
            profile.account_key = generate_account_key().decode()  # once per profile, then reused
        if profile.account_directory != url:
            profile.account_url = ""  # another CA: the old account URL means nothing there
        client = acme_client(profile, account_key=profile.account_key,
                             account_url=profile.account_url)
        try:
            if not profile.account_url:
                account = _register(profile, client)
            elif profile.account_email != profile.email:
                account = client.update_contact(profile.email)
            else:
                account = client.register(profile.email)  # finds the existing account: status check
        finally:
            client.close()
        _store_account(profile, account, url)


def recover_account(profile: CAProfile, lost_url: str, *, log=None) -> None:
    """The CA no longer knows the account at `lost_url`: find this key's account
    (onlyReturnExisting), else register again (with EAB when the profile has it); a key whose
    account the CA deactivated gets a new key and account. Once per caller: whoever holds the
    lock first repairs it, the others find it repaired."""
    with account_lock(profile):
        url = directory_url(profile)
        if _has_account(profile, url) and profile.account_url != lost_url:
            return
        client = acme_client(profile, account_key=profile.account_key, log=log)
        try:
            account = client.find_account()
            if account is not None and account.status != "valid":
                if log:
                    log(f"account: {account.url or 'the account of this key'} is "
                        f"{account.status} at the CA; registering a new account with a new key")
                client.close()
                profile.account_key = generate_account_key().decode()
                client = acme_client(profile, account_key=profile.account_key, log=log)
                account = None
            if account is None:
                account = _register(profile, client)
        finally:
            client.close()
        audit.record("ACME account recovered", "ca_profile", profile.id,
                     f"{profile.name}: the CA no longer knew {lost_url}; now {account.url}")
        _store_account(profile, account, url)


def _register(profile: CAProfile, client: AcmeClient):
    """A new account for the client's key, with EAB when the profile has (or fetches) it."""
    eab = plugin_for(profile).eab_credentials(view_of(profile), timeout=profile.api_timeout)
    return client.register(profile.email, eab_kid=eab.kid if eab else None,
                           eab_hmac=eab.hmac if eab else None)


def _store_account(profile: CAProfile, account, directory: str) -> None:
    profile.account_url, profile.account_status = account.url, account.status
    profile.account_email, profile.account_directory = profile.email, directory
    db.session().commit()
