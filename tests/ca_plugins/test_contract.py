"""The contract every registered CA module keeps, and plugin discovery."""
from __future__ import annotations

import sys
import types
from urllib.parse import urlsplit

import pytest

from webapp.ca_plugins import CAPlugin, ProfileView, discover

REGISTRY = discover()


@pytest.mark.parametrize("plugin_id", sorted(REGISTRY.plugins))
def test_plugin_keeps_the_contract(plugin_id):
    plugin_cls = REGISTRY.plugins[plugin_id]
    assert plugin_cls.id == plugin_id and plugin_cls.label and plugin_cls.description
    plugin = plugin_cls()
    if plugin_cls.custom_directory:
        view = ProfileView(directory_url="https://ca.example/acme/directory")
        assert plugin.validate(view) == {}
        assert plugin.validate(ProfileView(directory_url="")) != {}
    else:
        assert plugin_cls.directories
        for key, (label, url) in plugin_cls.directories.items():
            view = ProfileView(ca_key=key)
            assert label and urlsplit(url).scheme == "https"
            assert plugin.directory_url(view) == url
            assert plugin.validate(view) == {}
        assert plugin.validate(ProfileView(ca_key="no-such-ca")) != {}
    assert plugin_cls.max_names >= 1
    assert plugin.account_per_certificate(ProfileView(eab_kid="k", eab_hmac="h", api_key="a")) is False


def test_the_three_shipped_modules_are_registered():
    assert {"letsencrypt", "zerossl", "custom"} <= set(REGISTRY.plugins)
    assert REGISTRY.plugins["letsencrypt"].default_key == "staging"


def test_deployment_override_replaces_the_directory():
    plugin = REGISTRY.get("zerossl", {"directory_url": "https://127.0.0.1:1/dir"})
    assert plugin.directory_url(ProfileView(ca_key="production")) == "https://127.0.0.1:1/dir"


def test_a_broken_plugin_is_listed_as_unavailable_and_the_rest_load(tmp_path, monkeypatch):
    import webapp.ca_plugins as package
    (tmp_path / "broken_ca.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    registry = discover()
    assert "broken_ca" in registry.unavailable and "needs libfoo" in registry.unavailable["broken_ca"]
    assert "letsencrypt" in registry.plugins
    sys.modules.pop("webapp.ca_plugins.broken_ca", None)


def test_entry_point_plugins_are_registered(monkeypatch):
    module = types.ModuleType("thirdparty_ca")

    class Buypass(CAPlugin):
        id = "buypass"
        label = "Buypass"
        description = "Buypass Go SSL"
        directories = {"production": ("Buypass", "https://api.buypass.com/acme/directory")}
    module.Buypass = Buypass
    sys.modules["thirdparty_ca"] = module

    class EntryPoint:
        name, value = "buypass", "thirdparty_ca:Buypass"

        def load(self):
            return Buypass
    import webapp.ca_plugins as package
    monkeypatch.setattr(package, "entry_points", lambda group: [EntryPoint()])
    assert discover().plugins["buypass"] is Buypass
    sys.modules.pop("thirdparty_ca")
