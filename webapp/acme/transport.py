"""Transport under the ACME adapter: directory probe, retrying POSTs, error translation.

certbot's `ClientNetwork` signs every POST (JWS, nonces, kid); this module adds what it lacks:
our retry policy (badNonce many times, 5xx and rateLimited within the caller's deadline),
operator-readable network diagnoses, and translation of everything into `webapp.errors`.
No Flask here.
"""
from __future__ import annotations

import contextlib
import email.utils
import json
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import urlsplit

import josepy as jose
import requests
import urllib3.exceptions
from acme import errors as acme_errors
from acme import messages
from acme.client import ClientNetwork

from webapp.acme.problems import SNIPPET_CHARS, problem_detail, problem_in, problem_words
from webapp.errors import AcmeError, AcmeNetworkError, AcmeRateLimited
from webapp.netguard import Judge, RefusedAddress, guard

LogFn = Callable[[str], None]

# Pebble rejects a configurable share of nonces (50 % in our hardest test). One POST gets at
# most this many attempts in all (badNonce, 5xx, Retry-After); each attempt is one
# ClientNetwork.post, which already retries a badNonce once on its own.
MAX_ATTEMPTS = 10
# A 5xx without Retry-After is retried with a short backoff this many times in all.
SERVER_ERROR_ATTEMPTS = 4
SERVER_ERROR_FIRST_WAIT = 0.1
REQUIRED_ENDPOINTS = ("newNonce", "newAccount", "newOrder")
# The directory's endpoint names (RFC 8555 section 7.1.1, RFC 9773 section 3); with "meta",
# nothing else in a directory is an endpoint. Let's Encrypt adds a random key pointing at a forum
# post (so that clients do not hard-code the key set): it is kept apart, never contacted.
ENDPOINT_NAMES = ("newNonce", "newAccount", "newOrder", "newAuthz", "revokeCert", "keyChange",
                  "renewalInfo")


@dataclass
class DirectoryInfo:
    """An ACME directory: its URL, endpoint URLs by name, its meta object, and the other
    entries (not endpoints: shown apart, never resolved or requested)."""

    url: str
    endpoints: dict[str, str]
    meta: dict = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)


UrlCheck = Callable[[str], "str | None"]  # a URL -> why it may not be used, or None


def probe_directory(url: str, *, timeout: float, ca_bundle: str | None = None,
                    url_check: UrlCheck | None = None, judge: Judge | None = None) -> DirectoryInfo:
    """GET the ACME directory at `url`; any failure is diagnosed in words an operator can act on.
    With `judge`, the request goes to the address it judged (never a second lookup's)."""
    if judge is None:
        return fetch_directory(url, timeout=timeout, ca_bundle=ca_bundle, url_check=url_check)
    with requests.Session() as session:
        guard(session, judge)
        return fetch_directory(url, timeout=timeout, ca_bundle=ca_bundle, session=session,
                               url_check=url_check)


def fetch_directory(url: str, *, timeout: float, ca_bundle: str | None = None,
                    session: requests.Session | None = None,
                    user_agent: str = "sslmanager", log: LogFn | None = None,
                    url_check: UrlCheck | None = None) -> DirectoryInfo:
    """probe_directory with an optional session to reuse (the client's connection pool). A 5xx
    or 429 is retried as a POST is (Retry-After honoured when it fits in `timeout`); what is
    still failing raises with the CA's Retry-After, so the next attempt waits at least that.
    `url_check` judges the endpoint URLs the directory lists (see check_endpoints)."""
    step = "fetch directory"
    getter = session.get if session is not None else requests.get
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            # Never follow a redirect: only the URL itself was checked against internal addresses.
            response = getter(url, timeout=timeout, verify=ca_bundle or True,
                              headers={"User-Agent": user_agent}, allow_redirects=False)
        except requests.RequestException as exc:
            raise network_error(exc, step=step, url=url, timeout=timeout, ca_bundle=ca_bundle) from exc
        if response.status_code != 429 and response.status_code < 500:
            break
        retry_after = retry_after_seconds(response)
        wait = server_retry_wait(response.status_code, retry_after, attempt=attempt,
                                 deadline=deadline)
        if wait is None:
            limited = response.status_code == 429
            raise (AcmeRateLimited if limited else AcmeError)(
                f"HTTP status {response.status_code}", step=step, url=url,
                detail=snippet(response.text), status=response.status_code,
                retry_after=retry_after,
                hint=("the CA is rate limiting us" if limited
                      else "the CA is unavailable or overloaded") + "; SSL Manager tries again "
                + (f"in {retry_after:.0f} seconds, as it asked" if retry_after else "later"))
        if log:
            log(f"{step}: GET {url} -> HTTP status {response.status_code}, retrying in "
                f"{wait:.2f}s (attempt {attempt + 1})")
        time.sleep(wait)
    if response.is_redirect:
        target = snippet(response.headers.get("Location", ""))
        raise AcmeError(f"the directory URL redirects (HTTP {response.status_code}) to {target}",
                        step=step, url=url, status=response.status_code,
                        hint="redirects are not followed: if you trust the target, enter it as the "
                             "directory URL")
    if not response.ok:
        raise AcmeError(f"HTTP status {response.status_code}", step=step, url=url,
                        detail=snippet(response.text), status=response.status_code,
                        hint="check the directory URL: it must be the CA's ACME directory")
    try:
        jobj = response.json()
    except ValueError:
        jobj = None
    missing = [name for name in REQUIRED_ENDPOINTS
               if not isinstance(jobj, dict) or not isinstance(jobj.get(name), str)]
    if missing:
        what = ("the response is not JSON (Content-Type: "
                f"{response.headers.get('Content-Type', 'none')})" if jobj is None
                else f"the JSON has no {', '.join(missing)}")
        raise AcmeError("not an ACME directory", step=step, url=url,
                        detail=f"{what}: {snippet(response.text)}", status=response.status_code,
                        hint="check the URL: it must be the CA's ACME directory, e.g. "
                             "https://acme-v02.api.letsencrypt.org/directory")
    endpoints = {name: value for name, value in jobj.items()
                 if name in ENDPOINT_NAMES and isinstance(value, str)}
    other = {name: snippet(value if isinstance(value, str) else json.dumps(value))
             for name, value in jobj.items() if name not in endpoints and name != "meta"}
    meta = jobj.get("meta") if isinstance(jobj.get("meta"), dict) else {}
    info = DirectoryInfo(url=url, endpoints=endpoints, meta=meta, other=other)
    check_endpoints(info, url_check)
    return info


def check_endpoints(info: DirectoryInfo, url_check: UrlCheck | None) -> None:
    """Refuse a directory that sends us elsewhere than its own URL may go: the directory URL
    was checked when the profile was saved, but every request after it goes where the
    directory says (newNonce, newOrder, keyChange...). One check per other host; the entries
    that are not endpoints are never requested, so never checked (nor resolved)."""
    if url_check is None:
        return
    own = urlsplit(info.url).hostname
    verdicts: dict[str, str | None] = {}
    for name, url in sorted(info.endpoints.items()):
        host = urlsplit(url).hostname or ""
        if host == own:
            continue
        if host not in verdicts:
            verdicts[host] = url_check(url)
        if verdicts[host]:
            raise AcmeError(f"the directory lists {name} at {snippet(url)}: {verdicts[host]}",
                            step="fetch directory", url=info.url,
                            hint="SSL Manager never sends requests to such addresses: check that "
                                 "the directory URL is the CA's own")


def snippet(text: str) -> str:
    """The start of a response body on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS] + "..."


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its args that are exceptions (requests wraps urllib3 that way), its causes."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        todo += [c for c in (current.__cause__, current.__context__) if c is not None]


def network_error(exc: requests.RequestException, *, step: str, url: str, timeout: float,
                  ca_bundle: str | None = None) -> AcmeError:
    """Name what went wrong on the wire: DNS, refused, TLS, timeout or other."""
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if isinstance(exc, RefusedAddress):  # not the network's doing: retrying will not help
        return AcmeError(str(exc), step=step, url=url,
                         hint="SSL Manager never sends requests to such addresses: check the CA's "
                              "directory URL and what its host name resolves to")
    causes = list(_causes(exc))
    kw = {"step": step, "url": url, "detail": _innermost(causes)}
    if isinstance(exc, requests.TooManyRedirects):  # any redirect: the session follows none
        return AcmeNetworkError(f"{host} answered with a redirect, which SSL Manager does not follow",
                                hint="an ACME server does not redirect its API: check that the "
                                     "directory URL is the CA's own", **kw)
    # Order matters: SSLError and ConnectTimeout are also ConnectionErrors.
    if isinstance(exc, requests.exceptions.SSLError):
        where = (f"the CA bundle {ca_bundle} does not verify it" if ca_bundle
                 else "it is not signed by a CA this system trusts")
        return AcmeNetworkError(
            f"TLS verification failed for {host}: {where}",
            hint="set this CA profile's CA bundle to the PEM of the CA that issued the "
                 "server's certificate", **kw)
    # A body that stops arriving mid-read is a ConnectionError wrapping urllib3's ReadTimeoutError
    # (not urllib3's TimeoutError: its NewConnectionError, a refusal, is one of those).
    if isinstance(exc, requests.Timeout) or any(
            isinstance(c, (urllib3.exceptions.ReadTimeoutError, TimeoutError)) for c in causes):
        return AcmeNetworkError(
            f"timed out after {timeout:g} seconds talking to {host}",
            hint="raise API Timeout if the CA is slow, or check the network path to it", **kw)
    if any(isinstance(c, (urllib3.exceptions.NameResolutionError, socket.gaierror))
           for c in causes):
        return AcmeNetworkError(f"could not resolve host {host}",
                                hint="check the host name in the URL and this machine's DNS", **kw)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return AcmeNetworkError(f"connection refused by {host}:{port}",
                                hint="check the port in the URL and that the CA is running", **kw)
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return AcmeNetworkError(f"TLS handshake with {host} failed",
                                hint="check that the URL's scheme and port are right", **kw)
    return AcmeNetworkError(f"could not talk to {host}:{port}",
                            hint="check the URL and the network path to the CA", **kw)


def _innermost(causes: list[BaseException]) -> str:
    """The most specific cause's text (urllib3's wrappers repeat themselves)."""
    for cause in reversed(causes):
        text = str(cause)
        if text:
            return snippet(text)
    return ""


def server_retry_wait(status: int, retry_after: float | None, *, attempt: int, deadline: float,
                      rate_limited: bool | None = None) -> float | None:
    """The one rule for a CA that is failing (5xx) or limiting us (429 / rateLimited), for the
    directory GET and every POST: seconds to wait before attempt `attempt + 1`, or None to give
    up. The CA's Retry-After when it sent one (never sooner), if it fits before `deadline`; a
    5xx without one gets a short doubling backoff, SERVER_ERROR_ATTEMPTS tries in all; a rate
    limit without one is not retried (asking again at once only spends the limit)."""
    if rate_limited is None:
        rate_limited = status == 429
    if attempt >= MAX_ATTEMPTS or (not rate_limited and status < 500):
        return None
    wait = retry_after
    if wait is None:
        if rate_limited or attempt >= SERVER_ERROR_ATTEMPTS:
            return None
        wait = SERVER_ERROR_FIRST_WAIT * 2 ** (attempt - 1)
    return wait if time.monotonic() + wait <= deadline else None


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None when absent.

    Not acme's ClientV2.retry_after: it returns a naive local time and mis-reads HTTP-dates
    (the zone offset is taken as days and the result is UTC compared with local time)."""
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class _CallContext(threading.local):
    """Per-thread state of the ACME call in progress (status, Retry-After, deadline)."""

    step = ""
    deadline = 0.0
    response: requests.Response | None = None


class RetryingNetwork(ClientNetwork):
    """ClientNetwork whose every POST follows our retry policy; ClientV2's verbs included."""

    def __init__(self, key: jose.JWK, *, alg: jose.JWASignature, verify: bool | str,
                 user_agent: str, timeout: float, log: LogFn, judge: Judge | None = None) -> None:
        super().__init__(key=key, alg=alg, verify_ssl=verify, user_agent=user_agent,
                         timeout=timeout)  # type: ignore[arg-type]  # requests takes floats
        # Every host judged at its first request, then dialled as judged.
        self.judged = guard(self.session, judge) if judge is not None else None
        self.timeout = timeout
        self.ctx = _CallContext()
        self._log = log
        self.session.hooks["response"].append(self._remember)
        # An ACME server never redirects its API; following one would send a signed request
        # (or, after a 303, a GET) to an address nobody checked.
        self.session.max_redirects = 0

    def _remember(self, response: requests.Response, *args, **kwargs) -> None:
        # acme's messages.Error carries no response: keep it for status and Retry-After.
        self.ctx.response = response
        # An error answer carries a fresh nonce too (RFC 8555 6.5), but ClientNetwork raises
        # before reading it: keep it, or every badNonce costs an extra newNonce round trip.
        if response.status_code >= 400 and self.REPLAY_NONCE_HEADER in response.headers:
            with contextlib.suppress(acme_errors.BadNonce):
                self._add_nonce(response)

    def post(self, *args, **kwargs) -> requests.Response:
        """ClientNetwork.post, retried on badNonce, 5xx and Retry-After within the deadline."""
        url = args[0] if args else kwargs.get("url", "")
        attempt = 0
        while True:
            attempt += 1
            self.ctx.response = None
            try:
                return super().post(*args, **kwargs)
            except (messages.Error, acme_errors.ClientError) as exc:
                wait = self._retry_wait(exc, url, attempt)
                if wait is None:
                    raise
                if wait > 0:
                    time.sleep(wait)

    def _retry_wait(self, exc: Exception, url: str, attempt: int) -> float | None:
        """Seconds to wait before retrying `exc`, or None to give up and raise it."""
        if isinstance(exc, acme_errors.ConflictError) or isinstance(exc, acme_errors.NonceError):
            return None  # 409 is an answer; a missing nonce came with a response that succeeded
        response = self.ctx.response
        status = response.status_code if response is not None else None
        code = exc.code if isinstance(exc, messages.Error) else None
        step = self.ctx.step
        if code == "badNonce":
            if attempt >= MAX_ATTEMPTS:
                return None
            self._log(f"{step}: badNonce from {url}, retrying (attempt {attempt + 1} "
                      f"of {MAX_ATTEMPTS})")
            return 0.0
        if status is None:
            return None
        wait = server_retry_wait(status, retry_after_seconds(response), attempt=attempt,
                                 deadline=self.ctx.deadline,
                                 rate_limited=status == 429 or code == "rateLimited")
        if wait is None:
            return None  # the caller gets AcmeRateLimited/AcmeError with the CA's retry_after
        self._log(f"{step}: HTTP {status} from {url}, retrying in {wait:.2f}s "
                  f"(attempt {attempt + 1})")
        return wait

    @contextmanager
    def step(self, step: str, url: str, *, deadline: float | None = None) -> Iterator[None]:
        """Run one protocol step: set its retry deadline and translate every failure."""
        ctx = self.ctx
        ctx.step = step
        ctx.deadline = deadline if deadline is not None else time.monotonic() + self.timeout
        ctx.response = None
        try:
            yield
        except AcmeError:
            raise
        except messages.Error as exc:
            raise self.problem_error(exc, step=step, url=url) from exc
        except requests.exceptions.InvalidJSONError as exc:  # a RequestException, not a network one
            raise self._unexpected(exc, step=step, url=url) from exc
        except requests.RequestException as exc:
            failed_url = exc.request.url if exc.request is not None else url
            raise network_error(exc, step=step, url=failed_url or url, timeout=self.timeout,
                                ca_bundle=self.verify_ssl if isinstance(self.verify_ssl, str)
                                else None) from exc
        except acme_errors.ClientError as exc:
            raise self._client_error(exc, step=step, url=url) from exc
        except (acme_errors.Error, jose.DeserializationError, ValueError) as exc:
            raise self._unexpected(exc, step=step, url=url) from exc

    def _unexpected(self, exc: Exception, *, step: str, url: str) -> AcmeError:
        """The CA answered, but not in a shape RFC 8555 allows."""
        response = self.ctx.response
        return AcmeError("unexpected answer from the CA", step=step,
                         url=response.url if response is not None and response.url else url,
                         detail=snippet(str(exc) or type(exc).__name__),
                         status=response.status_code if response is not None else None)

    def problem_error(self, problem: messages.Error, *, step: str, url: str,
                      message: str = "") -> AcmeError:
        """An AcmeError carrying the CA's problem document (type, detail, subproblems)."""
        response = self.ctx.response
        status = response.status_code if response is not None else None
        retry_after = retry_after_seconds(response)
        code = problem.code or ""
        default = (f"the CA refused the request ({code or problem.typ})", "")
        words, hint = problem_words(code) or default
        cls = AcmeError
        if code == "rateLimited" or status == 429 or (status == 503 and retry_after is not None):
            cls = AcmeRateLimited
            if retry_after is not None:
                hint = f"wait {retry_after:.0f} seconds before trying again"
        return cls(message or words, step=step, hint=hint,
                   url=response.url if response is not None and response.url else url,
                   detail=problem_detail(problem), problem_type=str(problem.typ or ""),
                   retry_after=retry_after, status=status)

    def _client_error(self, exc: acme_errors.ClientError, *, step: str, url: str) -> AcmeError:
        """A non-problem failure: an HTTP error without JSON, a missing nonce or header."""
        response = self.ctx.response
        if isinstance(exc, acme_errors.ConflictError):
            # acme raises ConflictError for every 409 before reading the body, so a problem
            # document sent with 409 (alreadyReplaced, RFC 9773) would lose its type here.
            problem = problem_in(response)
            if problem is not None:
                return self.problem_error(problem, step=step, url=url)
            return AcmeError("the CA answered 409 Conflict", step=step, url=url, status=409,
                             detail=str(exc.location))
        if response is None or response.ok:
            return self._unexpected(exc, step=step, url=url)
        retry_after = retry_after_seconds(response)
        status = response.status_code
        limited = status == 429 or (status == 503 and retry_after is not None)
        cls = AcmeRateLimited if limited else AcmeError
        return cls(f"HTTP status {status} from the CA", step=step, url=response.url or url,
                   detail=snippet(response.text), status=status, retry_after=retry_after,
                   hint="try again later" if status >= 500 else "")


