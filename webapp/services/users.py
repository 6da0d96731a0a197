"""Managing users (an admin's job, on the Users page and with `sslmanager user ...`): create,
disable, enable, reset a password, change a role. The last enabled admin can be neither disabled
nor demoted, so an instance always has someone who can manage it."""
from __future__ import annotations

from sqlalchemy import func, select

from .. import db
from ..errors import Conflict, NotFound, ValidationError
from ..models import Admin
from . import audit, auth, passkeys, roles, two_factor


def all_users() -> list[Admin]:
    return list(db.session().scalars(select(Admin).order_by(Admin.username)))


def get(user_id: int) -> Admin:
    user = db.session().get(Admin, user_id)
    if user is None:
        raise NotFound(f"No user #{user_id}.")
    return user


def find(username: str) -> Admin:
    user = db.session().execute(select(Admin).filter_by(username=username.strip())).scalar_one_or_none()
    if user is None:
        raise NotFound(f"No user named {username!r}.", hint="`sslmanager user list` shows them.")
    return user


def _enabled_admins() -> int:
    return db.session().scalar(select(func.count()).select_from(Admin).where(
        Admin.role == roles.ADMIN_ROLE, Admin.disabled.is_(False))) or 0


def _keep_an_admin(user: Admin, what: str) -> None:
    if user.role == roles.ADMIN_ROLE and not user.disabled and _enabled_admins() <= 1:
        raise Conflict(f"{user.username!r} is the last enabled admin: it cannot be {what}.",
                       hint="Make another user an admin first.")


def _role(value: str) -> str:
    try:
        return roles.check_role(value)
    except ValueError as exc:
        raise ValidationError({"role": str(exc)}) from None


def create(username: str, password: str, role: str) -> Admin:
    """A new user with a password and a role."""
    roles.require(roles.ADMIN)
    role_name = _role(role)
    if db.session().execute(select(Admin.id).filter_by(username=username.strip())).first():
        raise ValidationError({"username": f"A user named {username.strip()!r} exists already."})
    user = auth.create_admin(username, password, role=role_name)
    audit.record("user created", "admin", user.id, f"{user.username} ({role_name})")
    db.session().commit()
    return user


def set_role(user: Admin, role: str) -> Admin:
    """Change the role; the user's browsers go on under fresh session tokens."""
    roles.require(roles.ADMIN)
    role_name = _role(role)
    if role_name == user.role:
        return user
    if role_name != roles.ADMIN_ROLE:
        _keep_an_admin(user, "demoted")
    was, user.role = user.role, role_name
    audit.record("role changed", "admin", user.id, f"{user.username}: {was} → {role_name}")
    db.session().commit()
    return user


def set_disabled(user: Admin, disabled: bool) -> Admin:
    """Disable (every session ends at once) or enable again."""
    roles.require(roles.ADMIN)
    if disabled:
        _keep_an_admin(user, "disabled")
    user.disabled = disabled
    if disabled:
        auth.end_sessions(user)
    audit.record("user disabled" if disabled else "user enabled", "admin", user.id, user.username)
    db.session().commit()
    return user


def reset_password(user: Admin, password: str, forget_2fa: bool = False) -> Admin:
    """A new password set by an admin; every session of the user ends. `forget_2fa`: also
    turn its second factor off (a lost phone)."""
    roles.require(roles.ADMIN)
    auth.create_admin(user.username, password)
    if forget_2fa:
        two_factor.reset(user)
        for key in passkeys.of(user):
            db.session().delete(key)
    audit.record("password reset", "admin", user.id,
                 user.username + (" (two-factor turned off)" if forget_2fa else ""))
    db.session().commit()
    return user


def end_sessions(user: Admin) -> None:
    """Sign the user out of every browser."""
    roles.require(roles.ADMIN)
    auth.end_sessions(user)
    audit.record("sessions ended", "admin", user.id, user.username)
    db.session().commit()
