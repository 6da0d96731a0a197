"""Every configuration key, its default, and one line on what it does.

Values come from, in order: these defaults, `instance/config.py`, then environment variables
of the same name. Every key carries the SSLMANAGER_ prefix so a host app's config stays apart.
"""
from __future__ import annotations

import json
import os
from typing import Any

from .errors import ConfigError

DEFAULTS: dict[str, Any] = {
    # Where runtime data lives (database, encryption key, local config). Default: ./instance.
    "SSLMANAGER_INSTANCE_PATH": None,
    # SQLAlchemy URL; default sqlite:///<instance>/sslmanager.db. PostgreSQL: postgresql+psycopg://...
    "SSLMANAGER_DATABASE_URL": None,
    # Data-encryption key (urlsafe base64 of 32 bytes). Default: read from / generated into
    # <instance>/encryption.key (mode 0600).
    "SSLMANAGER_ENCRYPTION_KEY": None,
    # Flask session signing key for standalone mode. Default: generated into <instance>/secret.key.
    "SSLMANAGER_SECRET_KEY": None,
    # Embedded: the host decides who may see our pages. A callable or "module:function":
    # exactly True allows; a response it returns or raises (a redirect to the host's sign-in)
    # is the answer; anything else is 403. Standalone default: a signed-in SSL Manager admin.
    "SSLMANAGER_AUTHORIZE": None,
    # Embedded: name of the host's base template our pages extend (it must have a `content` block).
    "SSLMANAGER_BASE_TEMPLATE": "sslmanager/base.html",
    # Embedded with a host base template: emit our CSS and htmx tags inside the content block.
    # Set False when the host page already loads htmx (and styles our markup itself).
    "SSLMANAGER_INCLUDE_ASSETS": True,
    # Single sign-on with OpenID Connect (standalone). Off while ISSUER is empty. The issuer URL
    # (discovery at <issuer>/.well-known/openid-configuration), the client registered there (its
    # secret: better from the environment than a file), the scopes asked for, the ID token claim
    # holding the user's groups, and which group gives which role, e.g. {"ssl-admins": "admin",
    # "ssl-operators": "operator", "ssl-viewers": "viewer"} (several: the highest role wins; none:
    # refused, and no user is made).
    "SSLMANAGER_OIDC_ISSUER": "",
    "SSLMANAGER_OIDC_CLIENT_ID": "",
    "SSLMANAGER_OIDC_CLIENT_SECRET": "",
    "SSLMANAGER_OIDC_SCOPES": "openid email profile groups",
    "SSLMANAGER_OIDC_GROUPS_CLAIM": "groups",
    "SSLMANAGER_OIDC_ROLES": {},
    # The sign-in page's button.
    "SSLMANAGER_OIDC_BUTTON": "Sign in with single sign-on",
    # False: passwords no longer sign anyone in, but the break-glass users named below (local
    # admins for when the identity provider is down).
    "SSLMANAGER_PASSWORD_SIGN_IN": True,
    "SSLMANAGER_BREAK_GLASS_USERS": [],
    # Commands act as this SSL Manager user (its role, its name in the audit log) when set;
    # unset, a command runs as the OS user that holds the data key, with no role check.
    "SSLMANAGER_CLI_USER": None,
    # The admin's name shown in the audit log when embedded: a callable or "module:function".
    "SSLMANAGER_CURRENT_USER": None,
    # The Content-Security-Policy on our responses. None: our strict policy standalone (with
    # X-Frame-Options: DENY); none of ours embedded, where our pages render in the host's layout
    # and the host's policy, if any, applies. A string: that policy, embedded or not.
    "SSLMANAGER_CSP": None,
    # Where our flash messages show: "sslmanager" (in our pages, under their own session key, so
    # a host layout that shows flashes never shows ours twice) or "host" (Flask's flash(), for
    # the host's layout to render; categories "info" and "error").
    "SSLMANAGER_FLASHES": "sslmanager",
    # Sign-in throttle: failed attempts allowed without delay for one account from one address,
    # and for one address over all accounts, within the window. Past either, each further try
    # waits SSLMANAGER_LOGIN_DELAY_SECONDS, doubling per failure up to the window; never a hard
    # lock, and an address that has not failed is never slowed. Failures older than the window
    # are deleted.
    "SSLMANAGER_LOGIN_MAX_PER_ACCOUNT": 5,
    "SSLMANAGER_LOGIN_MAX_PER_ADDRESS": 20,
    "SSLMANAGER_LOGIN_WINDOW_SECONDS": 900,
    "SSLMANAGER_LOGIN_DELAY_SECONDS": 30,
    # Standalone sessions: signed out after this many minutes without a page opened (background
    # refreshes do not count), and this many hours after sign-in whatever happens.
    "SSLMANAGER_SESSION_IDLE_MINUTES": 30,
    "SSLMANAGER_SESSION_MAX_HOURS": 12,
    # Private-key downloads (privkey.pem, PKCS#12) ask the password again unless it was typed
    # within this many minutes.
    "SSLMANAGER_REAUTH_MINUTES": 5,
    # Embedded: a callable or "module:function" that returns True when the host's user proved
    # who they are recently enough for a private-key download. None: the host's
    # SSLMANAGER_AUTHORIZE decision is enough.
    "SSLMANAGER_RECENT_AUTH": None,
    # The JSON API (/api/v1 under the pages' prefix) authenticates bearer tokens only. After a
    # token checks out, this callable or "module:function" is asked with its principal
    # (services.permissions.Principal: name "token:<name>", scopes, cert_ids, tags): exactly
    # True allows, anything else is a 403 problem. None: the token's scopes decide alone.
    # (flask-smorest reads its own keys under this prefix too, e.g. SSLMANAGER_API_TITLE;
    # none is needed.)
    "SSLMANAGER_API_AUTHORIZE": None,
    # How long an API request's Idempotency-Key (with its answer) is kept, in hours.
    "SSLMANAGER_API_IDEMPOTENCY_HOURS": 24,
    # Largest request body in bytes (standalone: Flask's MAX_CONTENT_LENGTH; the server refuses
    # far larger bodies before reading them). Larger requests get a 413 page.
    "SSLMANAGER_MAX_CONTENT_LENGTH": 1024 * 1024,
    # Reverse proxies in front of the app that set X-Forwarded-For/-Proto/-Host (a hop count).
    # 0: forwarded headers are ignored, the peer address is the client.
    "SSLMANAGER_TRUSTED_PROXIES": 0,
    # Strict-Transport-Security max-age sent on HTTPS responses; 0 = no HSTS header. Off by
    # default: HSTS binds the whole host name, on every port, to HTTPS for that long.
    "SSLMANAGER_HSTS_SECONDS": 0,
    # Run the scheduler inside the web process (`sslmanager run`); `sslmanager worker` ignores it.
    "SSLMANAGER_SCHEDULER_ENABLED": True,
    # Resolvers used for CNAME checks: list of "ip" or "ip:port"; empty = the system's.
    "SSLMANAGER_DNS_RESOLVERS": [],
    # Port used to ask a zone's NS hosts directly (delegation check); 53 outside labs.
    "SSLMANAGER_DNS_NS_PORT": 53,
    # Outbound connections (README: "Outbound addresses"). Link-local, cloud-metadata and
    # multicast addresses are always refused. Private, loopback, carrier-grade NAT and other
    # internal addresses are refused unless this is True (for every purpose: labs) ...
    "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": False,
    # ... or the purpose's own allow-list holds them: CIDRs, e.g. ["10.0.0.25/32"].
    # ACME: CA directories and every endpoint they list.
    "SSLMANAGER_OUTBOUND_ALLOW_ACME": [],
    # Webhook receivers of notification channels.
    "SSLMANAGER_OUTBOUND_ALLOW_WEBHOOK": [],
    # SMTP hosts of email channels (the mail relay).
    "SSLMANAGER_OUTBOUND_ALLOW_SMTP": [],
    # RFC 2136 servers, the PowerDNS API and DNS server, and the name servers the delegation
    # check asks directly (the DNS primary). The builtin DNS server is SSL Manager's own.
    "SSLMANAGER_OUTBOUND_ALLOW_DNS": [],
    # The deploy TLS probe's host:port; loopback by default (the web server on this host).
    "SSLMANAGER_OUTBOUND_ALLOW_DEPLOY": ["127.0.0.0/8", "::1/128"],
    # The OpenID Provider (discovery, keys, token endpoint), e.g. a Keycloak on the LAN.
    "SSLMANAGER_OUTBOUND_ALLOW_OIDC": [],
    # Per-CA-module deployment overrides, e.g. {"zerossl": {"directory_url": ..., "api_url": ...,
    # "ca_bundle": "/path.pem"}}: a mirror, a proxy, or a lab CA standing in for the real one.
    "SSLMANAGER_CA_OVERRIDES": {},
    # How long one issuance may take from order to certificate before it is retried later.
    "SSLMANAGER_ISSUANCE_TIMEOUT": 300,
    # Transient failures (network, 5xx, DNS provider) retried this many times before Failed.
    "SSLMANAGER_MAX_ATTEMPTS": 5,
    # CA failover (a certificate's or its profile's fallback list; services/failover.py): seconds
    # a CA profile's directory must have been unreachable before its certificates fail over (only
    # within the last third of their lifetime; a first issuance also fails over once its attempts
    # run out). 0: at the first unreachable attempt.
    "SSLMANAGER_FAILOVER_UNREACHABLE": 3600,
    # ...and how many serverInternal answers in a row (from any certificate) mean it cannot issue.
    "SSLMANAGER_FAILOVER_SERVER_ERRORS": 3,
    # Seconds between scheduler looks at Pending certificates' CNAMEs.
    "SSLMANAGER_CNAME_POLL_INTERVAL": 60,
    # ACME Renewal Information (RFC 9773): seconds between polls of a certificate's renewalInfo.
    # The CA's Retry-After is followed within these bounds (with jitter); without one, the default.
    "SSLMANAGER_ARI_POLL_MIN": 3600,
    "SSLMANAGER_ARI_POLL_MAX": 86400,
    "SSLMANAGER_ARI_POLL_DEFAULT": 6 * 3600,
    # Seconds between the scheduler's sweeps of orphan TXT values from the technical zones
    # (60 to 86400; one node sweeps). `sslmanager dns sweep` sweeps at once.
    "SSLMANAGER_SWEEP_INTERVAL": 900,
    # Parallel orders per CA profile (the scheduler's bound).
    "SSLMANAGER_CONCURRENCY_PER_CA": 4,
    # Page size of long lists.
    "SSLMANAGER_PAGE_SIZE": 50,
    # Addresses (list of CIDRs, e.g. ["10.0.0.0/8", "127.0.0.1/32"]) that may read /metrics
    # without signing in: the Prometheus scrapers. Empty = signed-in admins only.
    "SSLMANAGER_METRICS_ALLOW": [],
    # Show the version and scheduler details on /healthz without signing in (else: status only).
    "SSLMANAGER_HEALTHZ_DETAILS": False,
    # Seconds an SMTP conversation or one webhook request may take.
    "SSLMANAGER_NOTIFY_TIMEOUT": 10,
    # Webhook deliveries: attempts per notification, and the first backoff in seconds (doubles).
    "SSLMANAGER_WEBHOOK_ATTEMPTS": 3,
    "SSLMANAGER_WEBHOOK_BACKOFF": 2,
    # Seconds a certificate's deploy command may run before it is killed and recorded as failed.
    "SSLMANAGER_DEPLOY_TIMEOUT": 60,
    # Seconds the deploy probe keeps asking host:port until it serves the new certificate.
    "SSLMANAGER_DEPLOY_PROBE_WAIT": 10,
    # Seconds without a poll after which an `sslmanager agent` counts as silent on the dashboard
    # (its last_seen is written in a batch once a minute, so keep this well above that).
    "SSLMANAGER_AGENT_SILENT_AFTER": 1800,
    # The Unix socket on which `sslmanager run` and `sslmanager worker` take `cert process` from
    # the `sslmanager` command of the same user (mode 0600). Default <instance>/control.sock;
    # "off" = none (the command then always does the work itself).
    "SSLMANAGER_CONTROL_SOCKET": None,
    # What `sslmanager run`, `worker` and `dns serve` log to standard error (each certificate's
    # steps, hand-offs, scheduler errors): DEBUG, INFO, WARNING or ERROR. Other libraries log
    # warnings only. A host app's own logging setup is left alone.
    "SSLMANAGER_LOG_LEVEL": "INFO",
}


def _parse(raw: str, default: Any) -> Any:
    """Read an environment value in the type of its default (bool, int, list, str)."""
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, dict):
        return json.loads(raw)
    if isinstance(default, list):
        raw = raw.strip()
        if raw.startswith("["):
            return json.loads(raw)
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def load(config: Any, instance_path: str, overrides: dict[str, Any] | None = None) -> None:
    """Fill a Flask config with our keys: defaults, instance/config.py, environment, overrides."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    config.update(_file_and_environment(instance_path))
    if overrides:
        config.update(overrides)


SWEEP_INTERVAL_RANGE = (60, 86400)


def sweep_interval(settings: Any) -> int:
    """SSLMANAGER_SWEEP_INTERVAL as whole seconds, or a ConfigError naming the key and the range."""
    raw = settings.get("SSLMANAGER_SWEEP_INTERVAL", DEFAULTS["SSLMANAGER_SWEEP_INTERVAL"])
    low, high = SWEEP_INTERVAL_RANGE
    try:
        seconds = int(str(raw).strip())
    except ValueError:
        seconds = None
    if isinstance(raw, bool) or seconds is None or not low <= seconds <= high:
        raise ConfigError(f"SSLMANAGER_SWEEP_INTERVAL: {raw!r} is not a whole number of seconds "
                          f"from {low} to {high}",
                          hint="set it to e.g. 900 (the default: every 15 minutes), or remove it")
    return seconds


def read(instance_path: str) -> dict[str, Any]:
    """The settings a standalone app on this instance has, read without Flask: what the
    `sslmanager` command needs to find the running service it may hand work to."""
    return {**DEFAULTS, **_file_and_environment(instance_path)}


def _file_and_environment(instance_path: str) -> dict[str, Any]:
    """instance/config.py's upper-case names (as Flask's from_pyfile reads them), then our keys
    from the environment."""
    values: dict[str, Any] = {}
    path = os.path.join(instance_path, "config.py")
    if os.path.exists(path):
        scope: dict[str, Any] = {"__file__": path}
        with open(path, "rb") as fh:
            exec(compile(fh.read(), path, "exec"), scope)  # noqa: S102 (the operator's own file)
        values.update({key: value for key, value in scope.items() if key.isupper()})
    for key, default in DEFAULTS.items():
        if key in os.environ:
            try:
                values[key] = _parse(os.environ[key], default)
            except ValueError:  # json.JSONDecodeError too
                raise ConfigError(f"{key}: {os.environ[key]!r} is not a valid "
                                  f"{type(default).__name__} (the default is {default!r})",
                                  hint=f"fix or unset {key} in the environment") from None
    return values


def database_url(settings: Any, instance_path: str) -> str:
    """The standalone app's database: SSLMANAGER_DATABASE_URL, else SQLite in the instance."""
    return settings.get("SSLMANAGER_DATABASE_URL") or "sqlite:///" + os.path.join(instance_path,
                                                                                  "sslmanager.db")


def control_socket(settings: Any, instance_path: str) -> str | None:
    """Where the service listens for the `sslmanager` command; None when that is turned off."""
    value = settings.get("SSLMANAGER_CONTROL_SOCKET")
    if value is None:
        return os.path.join(instance_path, "control.sock")
    if str(value).strip().lower() in {"", "off", "0", "false", "no"}:
        return None
    return os.path.join(instance_path, str(value))  # a relative path is inside the instance


def instance_path_from_env() -> str | None:
    """The instance folder named by SSLMANAGER_INSTANCE_PATH, if any."""
    path = os.environ.get("SSLMANAGER_INSTANCE_PATH")
    return os.path.abspath(path) if path else None
