"""Items 3 and 6, through the real `flask` command as the panel developer runs it: the host's
Flask-Migrate leaves our tables alone, and `flask sslmanager` offers only what works in a host."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flask(folder, *args, exclude="1", stdin=None):
    env = {**os.environ, "HOSTPANEL_DIR": str(folder), "HOSTPANEL_EXCLUDE": exclude,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("FLASK_APP", None)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "tests.embedding.host:cli_app()", *args],
                          cwd=folder, env=env, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """A panel whose schema lives in its own Flask-Migrate history, with SSL Manager's beside it."""
    folder = tmp_path_factory.mktemp("panel")
    for args in (("db", "init"), ("db", "migrate", "-m", "panel"), ("db", "upgrade"),
                 ("sslmanager", "db", "upgrade")):
        result = flask(folder, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return folder


def _revisions(folder):
    return {p.name: p.read_text() for p in (folder / "migrations" / "versions").glob("*.py")}


def test_the_hosts_autogenerate_would_drop_our_tables_without_the_filter(panel):
    before = _revisions(panel)
    result = flask(panel, "db", "migrate", "-m", "careless", exclude="0")
    assert result.returncode == 0, result.stderr
    (new,) = set(_revisions(panel)) - set(before)
    script = _revisions(panel)[new]
    (panel / "migrations" / "versions" / new).unlink()  # never let it near an upgrade
    assert "op.drop_table('sslm_ca_profile')" in script and "op.drop_table('sslm_alembic_version')" in script


def test_with_include_object_the_hosts_autogenerate_leaves_our_tables_alone(panel):
    before = _revisions(panel)
    result = flask(panel, "db", "migrate", "-m", "nothing")
    assert result.returncode == 0, result.stderr
    assert "No changes in schema detected" in result.stdout + result.stderr
    assert _revisions(panel) == before
    assert "create_table('host_site'" in "".join(before.values())  # the host's own history is whole
    assert not any("sslm_" in text for text in before.values())


def test_the_embedded_group_leaves_out_the_standalone_only_commands(panel):
    listed = flask(panel, "sslmanager", "--help").stdout
    for name in ("ca", "cert", "db", "worker", "renew", "dns", "rotate-encryption-key"):
        assert f"  {name} " in listed, name
    assert "create-admin" not in listed and "  run " not in listed


@pytest.mark.parametrize(("args", "hint"), [(("create-admin", "alice", "--password-stdin"), "SSLMANAGER_AUTHORIZE"),
                                            (("run",), "flask sslmanager worker")])
def test_a_standalone_only_command_asked_for_by_name_says_why(panel, args, hint):
    result = flask(panel, "sslmanager", *args, stdin="long enough password\n")
    assert result.returncode == 1
    assert "is for standalone SSL Manager" in result.stderr and hint in result.stderr
    assert "saved" not in result.stdout


def test_standalone_flask_sslmanager_still_offers_every_command(tmp_path):
    from webapp import create_app
    app = create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance")})
    listed = app.test_cli_runner().invoke(args=["sslmanager", "--help"]).output
    assert "create-admin" in listed and "  run " in listed
