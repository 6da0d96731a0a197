"""Every command × every role, acting as SSLMANAGER_CLI_USER: refused commands exit 1 with
"Not allowed" and an audit line before doing anything; allowed ones run (and fail, if they
fail, for their own reasons: names that do not exist). Expectations come from the issue's role
descriptions; a command missing here fails the test."""
from __future__ import annotations

import click
import pytest
from sqlalchemy import select

from webapp import db
from webapp.cli.base import commands
from webapp.models import AuditEvent
from webapp.services.auth import create_admin

V, O, A = "viewer", "operator", "admin"
RANK = {V: 0, O: 1, A: 2}
# command → (least role, arguments naming nothing that exists)
SPEC = {
    "ca list": (V, []), "ca add": (A, ["--name", "x", "--module", "nosuch"]), "ca edit": (A, ["nosuch"]),
    "ca test": (A, ["nosuch"]), "ca delete": (A, ["nosuch"]),
    "cert list": (V, []), "cert show": (V, ["999999"]), "cert fallback": (O, ["999999"]), "cert add": (O, ["--ca", "nosuch", "example.com"]),
    "cert revoke": (O, ["999999"]), "cert process": (O, ["999999"]),
    "cert export": (O, ["999999", "--out", "/nonexistent-dir"]),
    "renew": (O, ["999999"]), "preflight": (V, ["999999"]),
    "zone list": (V, []), "zone add": (A, ["x.example", "--provider", "builtin"]), "zone edit": (A, ["nosuch"]),
    "zone delete": (A, ["nosuch"]), "zone check": (A, ["nosuch"]),
    "dns serve": (A, None), "dns sweep": (A, []),
    "notify list": (V, []), "notify test": (A, ["nosuch"]),
    "user list": (A, []), "user create": (A, ["newbie", "--password-stdin"]), "user disable": (A, ["nosuch"]),
    "user enable": (A, ["nosuch"]), "user reset": (A, ["nosuch", "--password-stdin"]),
    "user role": (A, ["nosuch", "viewer"]), "user sessions": (A, ["nosuch"]),
    "token create": (A, ["--name", "t", "--scope", "read"]), "token list": (A, []), "token revoke": (A, ["nosuch"]),
    "create-admin": (A, ["nosuch", "--password-stdin"]), "disable-admin": (A, ["nosuch"]),
    "enable-admin": (A, ["nosuch"]),
    # These serve, copy or rewrite the whole instance: only their refusal is run here.
    "rotate-encryption-key": (A, None), "run": (A, None), "worker": (A, None),
    "db upgrade": (A, None), "db current": (A, None), "db copy": (A, ["--to", "sqlite:///nowhere"]),
    "backup": (A, None), "restore": (A, [__file__]),
}


SLOW = {"db copy", "restore"}  # given arguments for their refusal only


def leaves(cmd, parent=""):
    path = f"{parent} {cmd.name}".strip()
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            yield from leaves(sub, path)
    else:
        yield path


def all_commands() -> list[str]:
    return sorted(path for cmd in commands for path in leaves(cmd))


def test_every_command_is_classified():
    assert sorted(SPEC) == all_commands()


def refusals(app) -> list[AuditEvent]:
    with app.app_context():
        return db.session().scalars(select(AuditEvent).filter_by(action="refused")).all()


@pytest.mark.parametrize("role", [V, O, A])
def test_every_command_for_every_role_is_allowed_or_refused_with_an_audit_line(app, role):
    with app.app_context():
        create_admin("owner", "the owner's long password")  # someone stays admin
        create_admin(role + "-user", "a long enough password", role=role)
    app.config["SSLMANAGER_CLI_USER"] = role + "-user"
    runner = app.test_cli_runner()
    for path, (least, args) in SPEC.items():
        allowed = RANK[role] >= RANK[least]
        if allowed and (args is None or path in SLOW):
            continue
        before = len(refusals(app))
        result = runner.invoke(args=["sslmanager", *path.split(), *(args or [])], input="a long enough password\n")
        if allowed:
            assert "Not allowed" not in result.output, (path, result.output)
            assert len(refusals(app)) == before, path
        else:
            assert result.exit_code == 1 and "Not allowed" in result.output, (path, result.output)
            events = refusals(app)
            assert len(events) == before + 1 and events[-1].actor == role + "-user", path
            assert path in events[-1].summary


def test_without_a_cli_user_the_instance_owner_runs_every_command(app, runner):
    result = runner.invoke(args=["sslmanager", "user", "create", "first", "--role", "admin", "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output


def test_an_unknown_or_disabled_cli_user_runs_nothing(app, runner):
    app.config["SSLMANAGER_CLI_USER"] = "ghost"
    result = runner.invoke(args=["sslmanager", "cert", "list"])
    assert result.exit_code == 1 and "no enabled user named 'ghost'" in result.output
