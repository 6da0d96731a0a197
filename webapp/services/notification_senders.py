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
    attempts, error, attempt = max(1, attempts), "", 0
    session = requests.Session()
    if address:  # vetted by the caller: dial it, never a second lookup's answer
        guard(session, lambda _url: (address, None))
    with session:
        for attempt in range(1, attempts + 1):
            try:
                resp = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
            except requests.RequestException as exc:
                error, retry = f"{type(exc).__name__}: {exc}", True
            else:
                if 200 <= resp.status_code < 300:
                    return attempt
                error = f"HTTP {resp.status_code} {resp.reason}: {resp.text[:200]}".rstrip(": ")
                retry = resp.status_code >= 500 or resp.status_code in (408, 429)
            if not retry or attempt == attempts:
                break
            time.sleep(backoff * 2 ** (attempt - 1))
    raise DeliveryError(_scrub(error, secret), step="webhook", url=url, attempts=attempt,
                        hint="" if error.startswith("HTTP 5") else "The receiver must answer 2xx.")
