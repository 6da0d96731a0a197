"""The lab's OpenID Provider: npm `oidc-provider` (tests/lab/oidc_provider.mjs, pinned in
package.json's devDependencies) under Node.js on a free loopback port, with the clients, users
and groups a test gives. Sign-in goes through the package's development login form: any name
and password; a name in `users` gets that user's groups, any other name none."""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import requests

from .proc import ManagedServer, free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")

# Two groups, one user in each, as an IdP's directory would have them.
USERS = {
    "vera": {"name": "Vera Viewer", "groups": ["ssl-viewers"]},
    "otto": {"name": "Otto Operator", "groups": ["ssl-operators", "staff"]},
}


class OidcProvider(ManagedServer):
    name = "oidc"

    def __init__(self, *, redirect_uris: list[str], post_logout_redirect_uris: list[str] = (),
                 users: dict[str, dict[str, Any]] | None = None, ttl: dict[str, int] | None = None,
                 extra_clients: list[dict[str, Any]] = ()) -> None:
        """One confidential client, `sslmanager` (secret in .client_secret), with these redirect
        URIs; `extra_clients` adds more (e.g. a second client for a wrong-audience token);
        `ttl` overrides token lifetimes in seconds (e.g. {"IdToken": 1})."""
        super().__init__()
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id = "sslmanager"
        self.client_secret = secrets.token_urlsafe(24)
        self.users = USERS if users is None else users
        self.clients = [{
            "client_id": self.client_id, "client_secret": self.client_secret,
            "redirect_uris": list(redirect_uris),
            "post_logout_redirect_uris": list(post_logout_redirect_uris),
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }, *extra_clients]
        self.ttl = ttl or {}

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def _launch(self) -> None:
        node = require_binary("node", "nodejs")
        if not (ROOT / "node_modules" / "oidc-provider").is_dir():
            from .proc import LabServerError
            raise LabServerError("node_modules/oidc-provider is missing: run `./dev test` "
                                 "(or `python scripts/vendor.py --test --force`, which runs npm ci)")
        config = self.workdir / "oidc.json"
        config.write_text(json.dumps({
            "issuer": self.issuer, "port": self.port, "clients": self.clients,
            "users": self.users, "ttl": self.ttl, "cookie_key": secrets.token_hex(16)}))
        self._spawn([node, "--no-warnings", str(SCRIPT), str(config)])

    def _ready(self) -> bool:
        return requests.get(self.discovery_url, timeout=2).ok
