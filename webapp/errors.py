"""The error tree: every error a user can see names the step or field, what the other side
said, and what to do next. No Flask here: the ACME and DNS layers raise these too."""
from __future__ import annotations


class SSLManagerError(Exception):
    """Base of every error SSL Manager raises on purpose."""

    def __init__(self, message: str, *, hint: str = "", step: str = "", url: str = "",
                 detail: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint      # what the operator should do next, in plain words
        self.step = step      # which step failed ("fetch directory", "new order", ...)
        self.url = url        # the URL or server involved
        self.detail = detail  # the other side's own words (problem document, rcode, ...)

    def __str__(self) -> str:
        parts = [f"{self.step}: " if self.step else "", self.message]
        if self.url:
            parts.append(f" ({self.url})")
        if self.detail:
            parts.append(f": {self.detail}")
        return "".join(parts)


class ConfigError(SSLManagerError):
    """The app cannot start or run as configured (missing key, unmigrated database, ...)."""


class ValidationError(SSLManagerError):
    """Input failed a check; `errors` maps each field name to its message."""

    def __init__(self, errors: dict[str, str], message: str = "Please correct the marked fields."):
        super().__init__(message)
        self.errors = errors


def describe(exc: SSLManagerError) -> list[str]:
    """The lines a command prints for an error: each field's message, or the error, then the hint."""
    if isinstance(exc, ValidationError):
        lines = [f"error: {field}: {message}" for field, message in exc.errors.items()]
    else:
        lines = [f"error: {exc}"]
    return lines + ([f"hint: {exc.hint}"] if exc.hint else [])


class NotFound(SSLManagerError):
    """A named object does not exist."""


class Conflict(SSLManagerError):
    """The action is refused because of the object's state (in use, wrong status, ...)."""


class CryptoError(SSLManagerError):
    """A secret could not be decrypted or a key could not be loaded."""


class AcmeError(SSLManagerError):
    """Talking to the CA failed; `problem_type` is the ACME problem URN when the CA sent one."""

    def __init__(self, message: str, *, problem_type: str = "", retry_after: float | None = None,
                 status: int | None = None, **kw):
        super().__init__(message, **kw)
        self.problem_type = problem_type
        self.retry_after = retry_after  # seconds the CA asked us to wait, when it said
        self.status = status


class AcmeNetworkError(AcmeError):
    """The CA could not be reached: DNS, connection, TLS or timeout."""


class AcmeRateLimited(AcmeError):
    """The CA said rateLimited (or 503 with Retry-After): wait before asking again."""


class DnsError(SSLManagerError):
    """A DNS provider or lookup failed; the message is prefixed with the provider name."""


class DnsUnsupported(DnsError):
    """The zone's DNS provider cannot do what was asked (e.g. manage customer CNAMEs)."""
