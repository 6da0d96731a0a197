"""How a notification travels: SMTP (STARTTLS, implicit TLS or none; optional login) and a
signed JSON POST with retries. No Flask and no database here: services.notifications decides
what to send, to whom, and once; these only deliver and say precisely why they could not."""
from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

import requests

from ..errors import SSLManagerError
from ..netguard import guard
from ..version import __version__

SIGNATURE_HEADER = "X-SSLManager-Signature"


class DeliveryError(SSLManagerError):
    """A notification could not be delivered; `attempts` says how often it was tried."""

    def __init__(self, message: str, *, attempts: int = 1, **kw):
        super().__init__(message, **kw)
        self.attempts = attempts


@dataclass
class Message:
    event: str
    dedupe_key: str
    subject: str
    text: str        # the email body
    payload: dict    # the webhook's JSON
    certificate_id: int | None = None
    profile_id: int | None = None


def _scrub(text: str, secret: str | None) -> str:
    """Belt and braces: a server that echoes what it got never puts our secret in a message."""
    return text.replace(secret, "••••••") if secret and len(secret) >= 4 else text


def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    """Verification always on: the system's CAs plus the channel's own bundle (a private CA)."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cadata=ca_bundle)
    return context


class _PinnedSMTP(smtplib.SMTP):
    """SMTP to the address the policy judged; the name stays for STARTTLS's certificate check."""

    def __init__(self, host: str, port: int, *, address: str, **kw):
        self._address = address
        super().__init__(host, port, **kw)

    def _get_socket(self, host, port, timeout):
        return super()._get_socket(self._address, port, timeout)


class _PinnedSMTPSSL(smtplib.SMTP_SSL):
    """Implicit TLS to the judged address; SNI and the certificate check use the name."""

    def __init__(self, host: str, port: int, *, address: str, **kw):
        self._address = address
        super().__init__(host, port, **kw)

    def _get_socket(self, host, port, timeout):
        return super()._get_socket(self._address, port, timeout)


def send_email(settings: dict, password: str | None, message: Message, *, timeout: float,
               address: str | None = None) -> int:
    """Send one message over SMTP; raises DeliveryError naming the step and the server's words.
    With `address`, the connection goes there (the host name is not looked up again)."""
    s = settings
    host, port, security = s["host"], int(s["port"]), s.get("security", "starttls")
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = message.subject, s["from_addr"], ", ".join(s["to"])
    mail["Date"], mail["Message-ID"] = formatdate(localtime=False), make_msgid(domain="sslmanager")
    mail["X-SSLManager-Event"] = message.event
    mail.set_content(message.text)
    where, step = f"{host}:{port}", "connect"
    try:
        context = _tls_context(s.get("ca_bundle", ""))
        pinned = {"address": address} if address else {}
        if security == "tls":
            smtp: smtplib.SMTP = (_PinnedSMTPSSL if address else smtplib.SMTP_SSL)(
                host, port, timeout=timeout, context=context, **pinned)
        else:
            smtp = (_PinnedSMTP if address else smtplib.SMTP)(host, port, timeout=timeout, **pinned)
        with smtp:
            step = "EHLO"
            smtp.ehlo()
            if security == "starttls":
                step = "STARTTLS"
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.get("username"):
                step = "login"
                smtp.login(s["username"], password or "")
            step = "send"
            refused = smtp.send_message(mail)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"the server refused the login for {s.get('username')}: {exc.smtp_code} "
                            f"{_scrub(exc.smtp_error.decode(errors='replace'), password)}",
                            step="SMTP login", url=where, hint="Check the username and password.") from None
    except smtplib.SMTPNotSupportedError as exc:
        hint = ("The server offers no STARTTLS: choose implicit TLS (port 465) or ask for TLS support."
                if step == "STARTTLS" else "The server offers no login here: check the security setting.")
        raise DeliveryError(f"the server does not support this: {exc}", step=f"SMTP {step}", url=where,
                            hint=hint) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"the server's TLS certificate is not trusted ({exc.verify_message})",
                            step=f"SMTP {step}", url=where,
                            hint="Paste the CA certificate that signed it into CA bundle.") from None
    except (smtplib.SMTPException, OSError) as exc:
        hint = "Check the host, port and security setting." if step in ("connect", "EHLO") else ""
        raise DeliveryError(_scrub(f"{type(exc).__name__}: {exc}", password), step=f"SMTP {step}",
                            url=where, hint=hint) from None
    if refused:
        raise DeliveryError(f"the server refused some recipients: {', '.join(refused)}", step="SMTP send",
                            url=where)
    return 1


def signature(secret: str, body: bytes) -> str:
    """The value of X-SSLManager-Signature: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(url: str, secret: str | None, message: Message, *, timeout: float, attempts: int = 3,
                 backoff: float = 2, address: str | None = None) -> int:
    """POST the JSON payload, signed; retried with backoff (doubling) on network errors, 5xx,
    408 and 429. Redirects are not followed (they could lead anywhere). With `address`, the
    connection goes there (the host name is not looked up again). Returns the attempts."""
    body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"SSLManager/{__version__}",
               "X-SSLManager-Event": message.event, "X-SSLManager-Delivery": message.dedupe_key}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    attempts, error, attempt = max(1, attempts), ("", "", ""), 0
    session = requests.Session()
    if address:  # vetted by the caller: dial it, never a second lookup's answer
        guard(session, lambda _url: (address, None))
    with session:
        for attempt in range(1, attempts + 1):
            try:
                resp = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
            except requests.RequestException as exc:
                error, retry = _network_failure(exc, url, timeout), True
            else:
                if 200 <= resp.status_code < 300:
                    return attempt
                error = _http_failure(resp)
                retry = resp.status_code >= 500 or resp.status_code in (408, 429)
            if not retry or attempt == attempts:
                break
            time.sleep(backoff * 2 ** (attempt - 1))
    step, cause, hint = error
    raise DeliveryError(_scrub(cause, secret), step=step, url=url, attempts=attempt, hint=hint)


# A webhook's failure as (step, cause, what to do): the same kind of diagnosis as a CA test,
# never an exception's repr.

def _network_failure(exc: requests.RequestException, url: str, timeout: float) -> tuple[str, str, str]:
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return ("webhook TLS", f"the receiver's TLS certificate is not trusted ({_last_reason(text)})",
                "Give the receiver a certificate for this host name from a CA this server trusts "
                "(REQUESTS_CA_BUNDLE names a private one).")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ("webhook connect", f"no connection to {where} within {timeout:g} s",
                "Check that the receiver is up and that no firewall drops connections from this server.")
    if isinstance(exc, requests.exceptions.Timeout):
        return ("webhook answer", f"{where} took the request but gave no answer within {timeout:g} s",
                "Look at the receiver's log: it must answer within SSLMANAGER_NOTIFY_TIMEOUT seconds.")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "refused" in text.lower():
            return ("webhook connect", f"connection refused by {where}: nothing listens there",
                    "Check the URL's host and port, and that the receiver is running.")
        return ("webhook connect", f"cannot connect to {where} ({_last_reason(text)})",
                "Check the URL's host name and that this server can reach it.")
    return ("webhook", f"the request failed ({_last_reason(text)})", "Check the URL.")


def _last_reason(text: str) -> str:
    """urllib3 nests its reasons ("...: Failed to establish...: [Errno 111] ..."): the innermost."""
    reason = text.rsplit(": ", 1)[-1].strip(" ')\"")
    return reason[:200] or text[:200]


def _http_failure(resp) -> tuple[str, str, str]:
    code = resp.status_code
    said = resp.text[:200].strip()
    cause = f"the receiver answered HTTP {code} {resp.reason}" + (f": {said}" if said else "")
    if code in (401, 403):
        hint = (f"The receiver refused the request: check that it expects this channel's signing "
                f"secret ({SIGNATURE_HEADER}) and accepts this server.")
    elif code in (404, 405):
        hint = "Check the URL's path: the receiver has no webhook there."
    elif 300 <= code < 400:
        hint = "Redirects are not followed: put the final URL in the channel."
    elif code >= 500:
        hint = "The receiver failed: its log says why."
    else:
        hint = "The receiver must answer 2xx: see what it said."
    return "webhook answer", cause, hint
