"""CA modules: one per CA, behind one small base class, found in this folder and in the
`sslmanager.ca_plugins` entry-point group. No Flask here."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

ENTRY_POINT_GROUP = "sslmanager.ca_plugins"


@dataclass
class ProfileView:
    """What a plugin may know of a CA profile (decrypted secrets included; never log it)."""

    ca_key: str = ""
    directory_url: str = ""
    email: str = ""
    eab_kid: str = ""
    eab_hmac: str = ""
    api_key: str = ""


@dataclass
class EabCredentials:
    kid: str
    hmac: str
    source: str  # "profile", "ZeroSSL API key", "ZeroSSL temporary (email)"


class CAPlugin:
    """One CA. Subclasses set the class attributes and override what differs."""

    id: ClassVar[str] = ""
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # key -> (label, directory URL); the first key is preselected unless default_key says.
    directories: ClassVar[dict[str, tuple[str, str]]] = {}
    default_key: ClassVar[str] = ""
    custom_directory: ClassVar[bool] = False   # the operator types the directory URL
    supports_eab: ClassVar[bool] = True
    supports_api_key: ClassVar[bool] = False
    max_names: ClassVar[int] = 100

    def __init__(self, settings: dict[str, Any] | None = None):
        # Per-deployment overrides (SSLMANAGER_CA_OVERRIDES[id]): directory_url, ca_bundle, api_url.
        self.settings = settings or {}

    def directory_url(self, profile: ProfileView) -> str:
        """The ACME directory this profile talks to."""
        if self.settings.get("directory_url"):
            return self.settings["directory_url"]
        if self.custom_directory:
            return profile.directory_url
        key = profile.ca_key or self.default_key or next(iter(self.directories))
        return self.directories[key][1]

    def default_ca_bundle(self) -> str | None:
        """A CA bundle path to trust for the directory's TLS, when the deployment sets one."""
        return self.settings.get("ca_bundle")

    def validate(self, profile: ProfileView) -> dict[str, str]:
        """Plugin-specific field checks: field name -> message."""
        errors = {}
        if not self.custom_directory and profile.ca_key not in self.directories:
            errors["ca_key"] = "Choose one of the listed certificate authorities."
        return errors

    def eab_credentials(self, profile: ProfileView, *, timeout: float) -> EabCredentials | None:
        """EAB for the profile's account, or None when the CA needs none."""
        if profile.eab_kid and profile.eab_hmac:
            return EabCredentials(profile.eab_kid, profile.eab_hmac, "profile")
        return None

    def account_per_certificate(self, profile: ProfileView) -> bool:
        """True when each certificate needs its own ACME account (ZeroSSL without keys)."""
        return False

    def certificate_eab(self, profile: ProfileView, *, timeout: float) -> EabCredentials | None:
        """Fresh EAB for one certificate's own account (only when account_per_certificate)."""
        return None


@dataclass
class Registry:
    plugins: dict[str, type[CAPlugin]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> import error

    def get(self, plugin_id: str, settings: dict[str, Any] | None = None) -> CAPlugin:
        return self.plugins[plugin_id](settings)


def _plugins_in(module: Any) -> list[type[CAPlugin]]:
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, CAPlugin) and obj is not CAPlugin
            and obj.id and obj.__module__ == module.__name__]


def discover() -> Registry:
    """Every CA module: this folder first, then installed packages' entry points."""
    registry = Registry()
    for info in pkgutil.iter_modules(__path__):
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # a broken plugin is listed, never fatal
            registry.unavailable[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        for plugin in _plugins_in(module):
            registry.plugins[plugin.id] = plugin
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = ep.load()
            if not (isinstance(plugin, type) and issubclass(plugin, CAPlugin)):
                raise TypeError(f"{ep.value} is not a CAPlugin subclass")
        except Exception as exc:
            registry.unavailable[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        registry.plugins.setdefault(plugin.id, plugin)
    return registry
