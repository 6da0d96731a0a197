"""Thin adapter over certbot's `acme`: our timeouts, our retries, our errors, one log line a step.

Issuance reads as one story in RFC 8555 order:
    client = AcmeClient(directory_url, account_key_pem, timeout=10, log=print)
    client.register(email)
    order = client.new_order(["example.com", "*.example.com"])
    challs = client.challenges(order)        # publish every c.txt_value at c.txt_name, then
    client.answer_challenges(challs)
    order = client.wait_order_ready(order.url, deadline=time.monotonic() + 120)
    order = client.finalize(order, csr_pem, deadline=time.monotonic() + 120)
    fullchain, alternates = client.download(order)

`deadline` arguments are absolute `time.monotonic()` values. JWS, nonces and EAB signing are
acme's; the retry policy and error translation live in webapp.acme.transport. No Flask here.
"""
from __future__ import annotations

import time
from typing import NoReturn, Sequence

import josepy as jose
import requests
from acme import crypto_util, messages
from acme.client import ClientV2

from webapp.acme.keys import (ari_cert_id, generate_account_key, load_account_key,
                              load_certificate, load_csr)
from webapp.acme.challenge_types import DNS01, answer_of, challenge_of, challenge_type
from webapp.acme.problems import problem_detail, problem_from_json, problem_hint
from webapp.acme.transport import (DirectoryInfo, LogFn, RetryingNetwork, fetch_directory,
                                   probe_directory, retry_after_seconds)
from webapp.acme.results import (AccountInfo, Challenge, NewOrder, OrderInfo,  # noqa: F401
                                 account_info, account_lost, identifier_of, links_of,
                                 order_info, refuses_replaces, status_of)
from webapp.errors import AcmeError
from webapp.netguard import Judge

__all__ = ["AccountInfo", "AcmeClient", "Challenge", "DirectoryInfo", "OrderInfo",
           "generate_account_key", "probe_directory"]

# Polls start almost at once (Pebble without its sleep validates in milliseconds) and back off.
POLL_FIRST = 0.015
POLL_FACTOR = 1.5
POLL_CAP = 3.0


class AcmeClient:
    """One account at one CA; every method is one step of RFC 8555 and logs one line."""

    def __init__(self, directory_url: str, account_key_pem: bytes, *, timeout: float,
                 ca_bundle: str | None = None, account_url: str | None = None,
                 user_agent: str = "sslmanager", log: LogFn | None = None,
                 judge: Judge | None = None) -> None:
        # `judge` judges every host this client talks to (netguard), the directory's at each
        # fetch and the endpoints it lists; the connection goes to the address judged.
        self.directory_url = directory_url
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.user_agent = user_agent
        self._log: LogFn = log or (lambda line: None)
        self._jwk, alg = load_account_key(account_key_pem)
        self._net = RetryingNetwork(self._jwk, alg=alg, verify=ca_bundle or True,
                                    user_agent=user_agent, timeout=timeout, log=self._log,
                                    judge=judge)
        self._directory: DirectoryInfo | None = None
        self._v2: ClientV2 | None = None
        self.account_url: str | None = None
        if account_url:
            self._set_account(account_url)

    # -- plumbing -------------------------------------------------------------------------

    @property
    def directory(self) -> DirectoryInfo:
        """The CA's directory, fetched on first use."""
        if self._directory is None:
            info = fetch_directory(self.directory_url, timeout=self.timeout,
                                   ca_bundle=self.ca_bundle, session=self._net.session,
                                   user_agent=self.user_agent, log=self._log,
                                   url_check=self._net.judged.problem if self._net.judged else None)
            self._log(f"fetch directory: GET {self.directory_url} -> "
                      f"{', '.join(sorted(info.endpoints))}")
            self._directory = info
        return self._directory

    @property
    def v2(self) -> ClientV2:
        """acme's ClientV2 over our retrying network (for its single-request verbs)."""
        if self._v2 is None:
            directory = self.directory
            jobj = dict(directory.endpoints, meta=dict(directory.meta))
            self._v2 = ClientV2(messages.Directory.from_json(jobj), self._net)
        return self._v2

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._net.session.close()

    def _set_account(self, url: str) -> None:
        self.account_url = url
        # ClientNetwork puts account["uri"] in each JWS as its kid.
        self._net.account = messages.RegistrationResource(uri=url, body=messages.Registration())

    def _require_account(self, step: str) -> None:
        if not self.account_url:
            raise AcmeError("no ACME account URL: register the account first", step=step,
                            url=self.directory_url)

    def _post(self, url: str, obj: jose.JSONDeSerializable | None, **kwargs) -> requests.Response:
        """POST (or POST-as-GET with obj None) through the retrying network."""
        return self._net.post(url, obj, new_nonce_url=self.directory.endpoints["newNonce"],
                              **kwargs)

    # -- account --------------------------------------------------------------------------

    def register(self, email: str, *, eab_kid: str | None = None,
                 eab_hmac: str | None = None) -> AccountInfo:
        """Create the account for this key, or find the existing one (newAccount returns it)."""
        step = "new account"
        url = self.directory.endpoints["newAccount"]
        eab = None
        if eab_kid or eab_hmac:
            if not (eab_kid and eab_hmac):
                raise AcmeError("EAB needs both the key ID and the HMAC key", step=step, url=url,
                                hint="enter both values from the CA's account page")
            try:
                eab = messages.ExternalAccountBinding.from_data(
                    self._jwk.public_key(), eab_kid, eab_hmac, self.v2.directory)
            except (ValueError, TypeError, jose.DeserializationError) as exc:
                raise AcmeError("the EAB HMAC key is not valid base64url", step=step, url=url,
                                hint="paste the HMAC key exactly as the CA shows it") from exc
        body = messages.NewRegistration(
            contact=(f"mailto:{email}",) if email else (), terms_of_service_agreed=True,
            external_account_binding=eab)
        self._net.account = None  # newAccount is signed with the JWK, never a kid
        with self._net.step(step, url):
            try:
                response = self._post(url, body)
            except messages.Error as exc:
                if exc.code == "unauthorized" and eab is not None:
                    raise self._net.problem_error(
                        exc, step=step, url=url,
                        message="the CA rejected the External Account Binding") from exc
                raise
            finally:
                self._restore_account()
            info = self._account_answer(response, step=step, url=url)
        verb = "created" if response.status_code == 201 else "found existing"
        self._log(f"{step}: POST {url} -> {response.status_code} {verb} {info.url} "
                  f"({info.status}{', EAB' if eab else ''})")
        return info

    def find_account(self) -> AccountInfo | None:
        """The account this key already has at the CA (newAccount with onlyReturnExisting,
        RFC 8555 7.3.1), or None when the CA knows no account for it."""
        step = "find account"
        url = self.directory.endpoints["newAccount"]
        self._net.account = None  # signed with the JWK, never a kid
        with self._net.step(step, url):
            try:
                response = self._post(url, messages.NewRegistration(only_return_existing=True))
            except messages.Error as exc:
                if exc.code == "accountDoesNotExist":
                    self._log(f"{step}: POST {url} -> no account for this key")
                    return None
                if exc.code == "unauthorized" and "deactivated" in (exc.detail or "").lower():
                    # Pebble (and Boulder) refuse to name a deactivated account: it is unusable.
                    self._log(f"{step}: POST {url} -> the account of this key is deactivated")
                    return AccountInfo(url="", status="deactivated", contact=())
                raise
            finally:
                self._restore_account()
            info = self._account_answer(response, step=step, url=url)
        self._log(f"{step}: POST {url} -> {response.status_code} {info.url} ({info.status})")
        return info

    def _restore_account(self) -> None:
        """After a newAccount request (signed with the JWK), sign with the kid again."""
        if self._net.account is None and self.account_url:
            self._set_account(self.account_url)

    def _account_answer(self, response: requests.Response, *, step: str, url: str) -> AccountInfo:
        """The account a newAccount answer names (its Location), from now on this client's."""
        account_url = response.headers.get("Location")
        if not account_url:
            raise AcmeError("the CA's newAccount answer has no Location header", step=step,
                            url=url, status=response.status_code)
        info = account_info(account_url, messages.Registration.from_json(response.json()))
        self._set_account(account_url)
        return info

    def update_contact(self, email: str) -> AccountInfo:
        """Replace the account's contact with `email` (empty clears it)."""
        step = "update account"
        self._require_account(step)
        url = self.account_url
        body = messages.UpdateRegistration(contact=(f"mailto:{email}",) if email else ())
        with self._net.step(step, url):
            response = self._post(url, body)
            info = account_info(url, messages.Registration.from_json(response.json()))
        self._log(f"{step}: POST {url} -> {response.status_code} contact "
                  f"{', '.join(info.contact) or '(none)'}")
        return info

    # -- order ----------------------------------------------------------------------------

    def new_order(self, identifiers: Sequence[str] | bytes | str, *,
                  profile: str | None = None, replaces: str | None = None) -> OrderInfo:
        """Open an order for DNS names (or IPs), given as a list or as a CSR in PEM.

        `replaces` (RFC 9773 5) is the ARI CertID of the certificate this order renews; a CA
        that refuses it (alreadyReplaced, malformed...) gets the same order once without it."""
        step = "new order"
        self._require_account(step)
        url = self.directory.endpoints["newOrder"]
        if isinstance(identifiers, (bytes, str)):
            csr = load_csr(identifiers, step=step)
            dns_names, ips = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
            names: list[str] = [*dns_names, *(str(ip) for ip in ips)]
        else:
            names = list(identifiers)
        if profile:
            offered = self.directory.meta.get("profiles") or {}
            if profile not in offered:
                raise AcmeError(f"the CA offers no certificate profile named {profile!r}",
                                step=step, url=self.directory_url,
                                detail=f"offered: {', '.join(offered) or 'none'}",
                                hint="pick one of the offered profiles or clear the setting")
        if replaces and "renewalInfo" not in self.directory.endpoints:
            replaces = None  # only a CA that offers ARI knows the field
        try:
            response = self._order_post(url, names, profile, replaces, step=step)
        except AcmeError as exc:
            if not (replaces and refuses_replaces(exc)):
                raise
            self._log(f"{step}: POST {url} -> {exc.status} the CA refused replaces={replaces} "
                      f"({exc.detail or exc.problem_type}); ordering again without it")
            replaces = None
            response = self._order_post(url, names, profile, None, step=step)
        with self._net.step(step, url):
            order_url = response.headers.get("Location")
            if not order_url:
                raise AcmeError("the CA's newOrder answer has no Location header", step=step,
                                url=url, status=response.status_code)
            order = order_info(order_url, messages.Order.from_json(response.json()))
        self._log(f"{step}: POST {url} -> {response.status_code} {order.status} {order_url} "
                  f"({', '.join(names)}{f', profile {profile}' if profile else ''}"
                  f"{f', replaces {replaces}' if replaces else ''})")
        return order

    def _order_post(self, url: str, names: list[str], profile: str | None,
                    replaces: str | None, *, step: str) -> requests.Response:
        body = NewOrder(identifiers=[identifier_of(n) for n in names], profile=profile,
                         replaces=replaces)
        with self._net.step(step, url):
            return self._post(url, body)

    def get_order(self, url: str) -> OrderInfo:
        """The order's current state (POST-as-GET)."""
        order, _response = self._fetch_order(url, step="get order")
        return order

    def _fetch_order(self, url: str, *, step: str, deadline: float | None = None
                     ) -> tuple[OrderInfo, requests.Response]:
        self._require_account(step)
        with self._net.step(step, url, deadline=deadline):
            response = self._post(url, None)
            return order_info(url, messages.Order.from_json(response.json())), response

    def authorization(self, url: str, *, step: str = "get authorization") -> messages.Authorization:
        """An authorization's current state (POST-as-GET)."""
        with self._net.step(step, url):
            return messages.Authorization.from_json(self._post(url, None).json())

    # -- challenges -----------------------------------------------------------------------

    def challenges(self, order: OrderInfo, method: str = DNS01) -> list[Challenge]:
        """The challenge of type `method` (dns-01 or dns-persist-01) of every authorization
        still to be validated."""
        step = "get authorization"
        self._require_account(step)
        # Sequential on purpose: measured against Pebble, threads were slower at 2 to 50
        # authorizations (JWS signing is CPU-bound), and acme's nonce pool is not thread-safe.
        found: list[Challenge] = []
        for url in order.authorizations:
            authz = self.authorization(url, step=step)
            name = ("*." if authz.wildcard else "") + authz.identifier.value
            status = status_of(authz.status)
            if status == "valid":
                self._log(f"{step}: POST {url} -> {name} already valid, no challenge needed")
                continue
            if status != "pending":
                raise self._authz_error(authz, url, step=step)
            matching = [c for c in authz.challenges if challenge_type(c) == method]
            if not matching:
                offered = ", ".join(challenge_type(c) for c in authz.challenges)
                raise AcmeError(f"the CA offers no {method} challenge for {name}", step=step,
                                url=url, detail=f"offered: {offered or 'none'}")
            found.append(challenge_of(url, authz, matching[0], method, self._jwk))
            self._log(f"{step}: POST {url} -> {name} pending, {method} TXT at "
                      f"{found[-1].txt_name}")
        return found

    def deactivate_authorization(self, url: str) -> None:
        """Give up an authorization nobody will answer (RFC 8555 7.5.2)."""
        with self._net.step("deactivate authorization", url):
            self._post(url, messages.UpdateAuthorization(status=messages.STATUS_DEACTIVATED))
        self._log(f"deactivate authorization: POST {url} -> deactivated")

    def answer_challenges(self, challenges: list[Challenge]) -> None:
        """Tell the CA every challenge is ready, one POST after another without waiting."""
        step = "answer challenge"
        self._require_account(step)
        for chall in challenges:
            challb, response = answer_of(chall, self._jwk)
            with self._net.step(step, chall.url):
                result = self.v2.answer_challenge(challb, response)
            self._log(f"{step}: POST {chall.url} -> {status_of(result.body.status)} "
                      f"({chall.identifier}, {chall.type})")

    # -- waiting and finalizing -----------------------------------------------------------

    def wait_order_ready(self, order_url: str, *, deadline: float) -> OrderInfo:
        """Poll until the CA has validated every authorization (status ready or valid)."""
        return self._poll_order(order_url, "wait for validation", ("ready", "valid"),
                                deadline=deadline)

    def finalize(self, order: OrderInfo, csr_pem: bytes | str, *, deadline: float) -> OrderInfo:
        """Send the CSR, then poll until the certificate is issued (status valid)."""
        step = "finalize"
        self._require_account(step)
        csr_pem = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
        load_csr(csr_pem, step=step)  # a bad CSR is our fault, not "unexpected answer from the CA"
        orderr = messages.OrderResource(
            uri=order.url, body=messages.Order(finalize=order.finalize), csr_pem=csr_pem)
        try:
            with self._net.step(step, order.finalize, deadline=deadline):
                status = status_of(self.v2.begin_finalization(orderr).body.status)
        except AcmeError as exc:
            # A finalize retried after a 5xx may have gone through the first time.
            if not exc.problem_type.endswith(":orderNotReady") or self.get_order(
                    order.url).status not in ("processing", "valid"):
                raise
            status = "processing"
        self._log(f"{step}: POST {order.finalize} -> {status}")
        if status == "invalid":
            self._raise_invalid(self.get_order(order.url), step=step)
        return self._poll_order(order.url, "wait for certificate", ("valid",), deadline=deadline)

    def _poll_order(self, url: str, step: str, done: tuple[str, ...], *,
                    deadline: float) -> OrderInfo:
        """POST-as-GET the order until its status is in `done`, backing off, never before
        Retry-After, never past `deadline`."""
        delay = wait = POLL_FIRST
        polls = 0
        started = time.monotonic()
        while True:
            # Sleep first: the CA has had no time yet; the first wait is tens of milliseconds.
            time.sleep(wait)
            order, response = self._fetch_order(url, step=step, deadline=deadline)
            polls += 1
            if order.status in done:
                self._log(f"{step}: POST {url} -> {order.status} after {polls} "
                          f"poll{'s' if polls > 1 else ''} in {time.monotonic() - started:.2f}s")
                return order
            if order.status == "invalid":
                self._raise_invalid(order, step=step)
            if order.status not in ("pending", "processing", "ready"):
                raise AcmeError(f"unexpected order status {order.status!r}", step=step, url=url)
            delay = min(delay * POLL_FACTOR, POLL_CAP)
            wait = max(delay, retry_after_seconds(response) or 0.0)
            if time.monotonic() + wait > deadline:
                raise AcmeError(f"the order is still {order.status} at the deadline "
                                f"({polls} polls in {time.monotonic() - started:.1f}s)",
                                step=step, url=url, retry_after=wait,
                                hint="check the DNS records, or allow more time")

    def _raise_invalid(self, order: OrderInfo, *, step: str) -> NoReturn:
        """Raise the most specific reason an order went invalid: a failed challenge first."""
        for authz_url in order.authorizations:
            authz = self.authorization(authz_url, step=step)
            if status_of(authz.status) == "invalid":
                raise self._authz_error(authz, authz_url, step=step)
        problem = problem_from_json(order.error)
        raise AcmeError("the CA marked the order invalid", step=step, url=order.url,
                        detail=problem_detail(problem) if problem else "",
                        problem_type=str(problem.typ) if problem else "")

    def _authz_error(self, authz: messages.Authorization, url: str, *, step: str) -> AcmeError:
        name = ("*." if authz.wildcard else "") + authz.identifier.value
        for challb in authz.challenges:
            if challb.error is not None:
                return AcmeError(f"validation of {name} failed ({challenge_type(challb)})", step=step,
                                 url=url, detail=problem_detail(challb.error),
                                 problem_type=str(challb.error.typ),
                                 hint=problem_hint(str(challb.error.typ), validation=True))
        return AcmeError(f"authorization for {name} is {status_of(authz.status)}", step=step, url=url)

    # -- certificate ----------------------------------------------------------------------

    def download(self, order: OrderInfo, *, alternates: bool = True) -> tuple[str, list[str]]:
        """The issued full chain PEM and, if asked, each alternate chain the CA links to."""
        step = "download certificate"
        self._require_account(step)
        if not order.certificate:
            raise AcmeError(f"the order has no certificate yet (status {order.status})",
                            step=step, url=order.url)
        with self._net.step(step, order.certificate):
            response = self._post(order.certificate, None)
            fullchain = response.content.decode("ascii")
        links = links_of(response, "alternate") if alternates else []
        chains = []
        for link in links:
            with self._net.step(step, link):
                chains.append(self._post(link, None).content.decode("ascii"))
        self._log(f"{step}: POST {order.certificate} -> {fullchain.count('BEGIN CERTIFICATE')} "
                  f"certificates, {len(chains)} alternate chain{'' if len(chains) == 1 else 's'}")
        return fullchain, chains

    def revoke(self, cert_pem: str | bytes, reason: int = 0) -> None:
        """Revoke a certificate this account owns (reason: RFC 5280 CRLReason code)."""
        step = "revoke certificate"
        self._require_account(step)
        cert = load_certificate(cert_pem, step=step)
        url = self.directory.endpoints.get("revokeCert", "")
        with self._net.step(step, url):
            self.v2.revoke(cert, reason)
        self._log(f"{step}: POST {url} -> revoked serial {cert.serial_number:x} "
                  f"(reason {reason})")

    def renewal_info(self, cert_pem: str | bytes) -> dict | None:
        """ARI (RFC 9773) for the certificate, or None when the CA has no renewalInfo.

        Returns {"suggestedWindow": {"start": datetime, "end": datetime},
                 "explanationURL": str | None, "retryAfter": seconds | None}."""
        step = "renewal info"
        base = self.directory.endpoints.get("renewalInfo")
        if not base:
            return None
        cert = load_certificate(cert_pem, step=step)
        url = f"{base.rstrip('/')}/{ari_cert_id(cert)}"
        with self._net.step(step, url):
            response = self._net.get(url)
            jobj = response.json()
            window = messages.RenewalInfo.from_json(jobj).suggested_window
        if not window.start or not window.end or window.end < window.start:
            raise AcmeError("the CA's renewal window is malformed", step=step, url=url,
                            detail=str(jobj.get("suggestedWindow")))
        retry_after = retry_after_seconds(response)
        self._log(f"{step}: GET {url} -> window {window.start.isoformat()} .. "
                  f"{window.end.isoformat()}")
        return {"suggestedWindow": {"start": window.start, "end": window.end},
                "explanationURL": jobj.get("explanationURL"), "retryAfter": retry_after}


