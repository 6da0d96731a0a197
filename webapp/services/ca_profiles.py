"""CA profiles: validation, create/edit/duplicate/delete, and Save and Test."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from sqlalchemy import delete as sql_delete
from sqlalchemy import exists, func, or_, select

from .. import db
from ..acme.client import DirectoryInfo, probe_directory
from ..ca_plugins import ProfileView
from ..eab import BadEabKey, normalise_hmac_key
from ..errors import AcmeError, Conflict, NotFound, SSLManagerError, ValidationError
from ..models import CAProfile, Certificate, NotificationChannel, NotificationSent, utcnow
from . import audit, chains, failover, persist
# The profile's plugin, client and account live in accounts; callers reach them through here too.
from .accounts import (acme_client, ca_bundle_path, directory_url, ensure_account,  # noqa: F401
                       plugin_for, recover_account, registry, view_of)
from .addresses import address_problem, checked_address

TTL_MIN, TTL_MAX = 10, 86400
TIMEOUT_MIN, TIMEOUT_MAX = 2, 300
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def is_fqdn(name: str) -> bool:
    """A syntactically valid DNS name with at least two labels (no wildcard, no final dot)."""
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def get(profile_id: int) -> CAProfile:
    # Beyond BIGINT is no id at all (and would crash the query instead of finding nothing).
    profile = db.session().get(CAProfile, profile_id) if 0 < profile_id < 2 ** 63 else None
    if profile is None:
        raise NotFound(f"No CA profile with id {profile_id}.")
    return profile


def by_name(name: str) -> CAProfile:
    profile = db.session().execute(select(CAProfile).filter_by(name=name)).scalar_one_or_none()
    if profile is None:
        raise NotFound(f"No CA profile named {name!r}.", hint="`sslmanager ca list` shows the names.")
    return profile


def all_profiles() -> list[CAProfile]:
    return list(db.session().execute(select(CAProfile).order_by(CAProfile.name)).scalars())


def is_ready(profile: CAProfile) -> bool:
    """Complete and its last Save and Test passed: what a form may choose for the user."""
    return bool(profile.last_test_ok and profile.dns_zone and profile.email)


def preselected(profiles: list[CAProfile], wanted: Any = None) -> CAProfile | None:
    """The profile a form shows chosen: the one asked for, else the first tested, working one,
    else none (the user picks; never an incomplete or failing one by default)."""
    if wanted not in (None, ""):
        found = next((p for p in profiles if str(p.id) == str(wanted)), None)
        if found is not None:
            return found
    return next((p for p in profiles if is_ready(p)), None)


def certificate_counts() -> dict[int, int]:
    """profile id -> number of certificates using it."""
    rows = db.session().execute(select(Certificate.profile_id, func.count())
                                .group_by(Certificate.profile_id))
    return {pid: n for pid, n in rows}


def _name_taken(name: str, exclude_id: int | None) -> bool:
    # The exact name too: SQL lower() may leave non-ASCII letters alone ("Ê"), Python's does not.
    query = select(CAProfile.id).where(or_(func.lower(CAProfile.name) == name.lower(), CAProfile.name == name))
    if exclude_id:
        query = query.where(CAProfile.id != exclude_id)
    return db.session().execute(query).first() is not None


def _int_field(values: dict, key: str, label: str, low: int, high: int, errors: dict) -> int | None:
    raw = str(values.get(key, "")).strip()
    try:
        number = int(raw)
    except ValueError:
        errors[key] = f"{label} must be a whole number of seconds between {low} and {high}."
        return None
    if not low <= number <= high:
        errors[key] = f"{label} must be between {low} and {high} seconds."
        return None
    return number


def _check_ca_bundle(pem: str) -> str | None:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        certs = []
    if not certs:
        return "Paste one or more PEM certificates (-----BEGIN CERTIFICATE-----), or leave empty."
    return None


def validate_create(values: dict[str, Any]) -> dict[str, str]:
    """Name and Module: what + Create asks for."""
    name = str(values.get("name", "")).strip()
    module = str(values.get("module", "")).strip()
    errors = {}
    if not name:
        errors["name"] = "Enter a name, e.g. LE STAGING."
    elif len(name) > 100:
        errors["name"] = "Keep the name under 100 characters."
    elif _name_taken(name, None):
        errors["name"] = f"A CA profile named {name!r} already exists; choose another name."
    if module not in registry().plugins:
        errors["module"] = "Choose one of the available modules."
    if errors:
        raise ValidationError(errors)
    return {"name": name, "module": module}


def create(values: dict[str, Any], *, complete: bool = False) -> CAProfile:
    """A new profile from Name and Module with the module's defaults (the UI's + Create);
    with complete=True every other field is validated and saved too (the CLI's `ca add`)."""
    clean = validate_create(values)
    plugin = registry().plugins[clean["module"]]
    profile = CAProfile(name=clean["name"], module=clean["module"], description="",
                        ca_key=plugin.default_key or next(iter(plugin.directories), ""),
                        directory_url="", ca_bundle="", email="", eab_kid="", dns_zone="",
                        dns_ttl=60, api_timeout=20, allow_wildcard=False)
    fallback_ids = None
    if complete:
        for key, value in validate(profile, {"ca_key": profile.ca_key, "dns_ttl": 60,
                                             "api_timeout": 20, **values}).items():
            setattr(profile, key, value)
        fallback_ids = failover.parse(values, None)
    db.session().add(profile)
    db.session().flush()
    if fallback_ids:
        failover.set_profile_fallbacks(profile, fallback_ids)
    audit.record("CA profile created", "ca_profile", profile.id, f"{profile.name} ({profile.module})")
    db.session().commit()
    return profile


DESCRIPTION_MAX = 500


def validate(profile: CAProfile, values: dict[str, Any]) -> dict[str, Any]:
    """Every field of the Field Reference; raises ValidationError naming each bad field."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    plugin_cls = registry().plugins.get(profile.module)

    name = str(values.get("name", profile.name)).strip()
    if not name:
        errors["name"] = "Enter a name, e.g. LE STAGING."
    elif len(name) > 100:
        errors["name"] = "Keep the name under 100 characters."
    elif _name_taken(name, profile.id):
        errors["name"] = f"A CA profile named {name!r} already exists; choose another name."
    clean["name"] = name
    description = str(values.get("description", "")).strip()
    if len(description) > DESCRIPTION_MAX:  # it shows under the name in the list: keep it short
        errors["description"] = (f"Keep the description to {DESCRIPTION_MAX} characters (it has "
                                 f"{len(description):,}): a line or two on what the profile is for.")
    clean["description"] = description

    clean["ca_key"] = str(values.get("ca_key", profile.ca_key) or "").strip()
    clean["directory_url"] = str(values.get("directory_url", profile.directory_url) or "").strip()

    email = str(values.get("email", "")).strip()
    if not email:
        errors["email"] = "Enter the email address for the ACME account (a shared ops mailbox is best)."
    else:
        # Imported here: its regexes cost ~20 ms at import, and only saving a form needs them.
        from email_validator import EmailNotValidError, validate_email
        try:
            email = validate_email(email, check_deliverability=False, test_environment=True).normalized
        except EmailNotValidError as exc:
            errors["email"] = f"Enter a valid email address: {exc}"
    clean["email"] = email

    kid = str(values.get("eab_kid", "")).strip()
    hmac_new = str(values.get("eab_hmac", "")).strip()
    clear_eab = _truthy(values.get("eab_clear"))
    hmac_kept = "" if clear_eab else (profile.eab_hmac or "")
    if hmac_new:
        try:  # one stored form whatever the CA printed: unpadded base64url (webapp.eab)
            hmac_new = normalise_hmac_key(hmac_new)
        except BadEabKey as exc:
            errors["eab_hmac"] = str(exc)
            hmac_new = ""
    hmac_final = hmac_new or hmac_kept
    if kid and not hmac_final:
        errors.setdefault("eab_hmac", "Enter the EAB HMAC key that goes with the EAB Key ID "
                                      "(or clear the Key ID).")
    elif hmac_final and not kid and not clear_eab:
        errors["eab_kid"] = "Enter the EAB Key ID that goes with the HMAC key (or clear both)."
    clean["eab_kid"] = "" if clear_eab else kid
    clean["eab_hmac"] = None if clear_eab else hmac_final or None

    api_new = str(values.get("api_key", "")).strip()
    clear_api = _truthy(values.get("api_key_clear"))
    clean["api_key"] = None if clear_api else (api_new or profile.api_key or None)
    if clean["api_key"] and plugin_cls is not None and not plugin_cls.supports_api_key:
        errors["api_key"] = "This CA module takes no account API key; leave it empty."

    zone = str(values.get("dns_zone", "")).strip().lower().rstrip(".")
    if not zone:
        errors["dns_zone"] = "Enter the technical zone where TXT records are made, e.g. acme.example.com."
    elif not is_fqdn(zone):
        errors["dns_zone"] = "Enter a valid DNS name such as acme.example.com (letters, digits, hyphens; no wildcard)."
    clean["dns_zone"] = zone

    clean["allow_wildcard"] = _truthy(values.get("allow_wildcard"))
    ttl = _int_field(values, "dns_ttl", "DNS Record TTL", TTL_MIN, TTL_MAX, errors)
    timeout = _int_field(values, "api_timeout", "API Timeout", TIMEOUT_MIN, TIMEOUT_MAX, errors)
    clean["dns_ttl"], clean["api_timeout"] = ttl, timeout

    clean["preferred_chain"], problem = chains.validate(values.get("preferred_chain", profile.preferred_chain))
    if problem:
        errors["preferred_chain"] = problem

    bundle = str(values.get("ca_bundle", profile.ca_bundle) or "").strip()
    if bundle:
        problem = _check_ca_bundle(bundle)
        if problem:
            errors["ca_bundle"] = problem
    clean["ca_bundle"] = bundle

    if plugin_cls is not None:
        view = ProfileView(ca_key=clean["ca_key"], directory_url=clean["directory_url"],
                           email=email, eab_kid=clean["eab_kid"], eab_hmac=clean["eab_hmac"] or "",
                           api_key=clean["api_key"] or "")
        errors.update({k: v for k, v in plugin_cls(None).validate(view).items() if k not in errors})
        if plugin_cls.custom_directory and "directory_url" not in errors:
            problem = address_problem(clean["directory_url"])
            if problem:
                errors["directory_url"] = problem
    if errors:
        raise ValidationError(errors)
    return clean


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "on", "yes", "y"}


def update(profile: CAProfile, values: dict[str, Any]) -> CAProfile:
    """Save the edit form; nothing is written when a field is wrong."""
    clean = validate(profile, values)
    fallback_ids = failover.parse(values, profile.id)  # None: the values do not touch the list
    changed = sorted(k for k, v in clean.items() if getattr(profile, k) != v)
    if fallback_ids is not None and fallback_ids != [p.id for p in failover.profile_fallbacks(profile)]:
        failover.set_profile_fallbacks(profile, fallback_ids)
        changed.append("fallbacks")
    for key, value in clean.items():
        setattr(profile, key, value)
    # What was saved is listed by field name only: secrets never enter the audit log.
    audit.record("CA profile edited", "ca_profile", profile.id,
                 f"{profile.name}: {', '.join(changed) or 'no changes'}")
    db.session().commit()
    return profile


def duplicate(profile: CAProfile) -> CAProfile:
    """A copy with a new name; the copy registers its own ACME account on its first test."""
    base = f"{profile.name} (copy)"
    name, n = base, 2
    while _name_taken(name, None):
        name, n = f"{base} {n}", n + 1
    copy = CAProfile(name=name, description=profile.description, module=profile.module,
                     ca_key=profile.ca_key, directory_url=profile.directory_url,
                     ca_bundle=profile.ca_bundle, email=profile.email, eab_kid=profile.eab_kid,
                     eab_hmac=profile.eab_hmac, api_key=profile.api_key, dns_zone=profile.dns_zone,
                     allow_wildcard=profile.allow_wildcard, dns_ttl=profile.dns_ttl,
                     api_timeout=profile.api_timeout, preferred_chain=profile.preferred_chain)
    db.session().add(copy)
    db.session().flush()
    audit.record("CA profile duplicated", "ca_profile", copy.id, f"{profile.name} → {copy.name}")
    db.session().commit()
    return copy


def delete(profile: CAProfile) -> None:
    """Delete a profile no certificate uses."""
    used = certificate_counts().get(profile.id, 0)
    if used:
        raise Conflict(f"{profile.name} is used by {used} certificate{'s' if used != 1 else ''}; "
                       "it cannot be deleted.",
                       hint="Reissue or delete those certificates first.")
    listed = failover.fallback_users(profile)
    if listed:
        raise Conflict(f"{profile.name} is a fallback in {listed} fallback list{'s' if listed != 1 else ''}; "
                       "it cannot be deleted.",
                       hint="Remove it from those certificates' and CA profiles' fallbacks first.")
    audit.record("CA profile deleted", "ca_profile", profile.id, profile.name)
    # Our children go by hand, never by ON DELETE CASCADE: in a host's SQLite database foreign
    # keys are not enforced (we leave its connections alone). For the same reason the delete
    # itself re-checks, atomically, that no certificate took the profile meanwhile.
    s = db.session()
    channels = select(NotificationChannel.id).where(NotificationChannel.profile_id == profile.id)
    s.execute(sql_delete(NotificationSent).where(NotificationSent.channel_id.in_(channels)))
    s.execute(sql_delete(NotificationChannel).where(NotificationChannel.profile_id == profile.id))
    failover.forget_profile(profile.id)
    gone = s.execute(sql_delete(CAProfile).where(
        CAProfile.id == profile.id, ~exists().where(Certificate.profile_id == profile.id)))
    if not gone.rowcount:
        s.rollback()
        raise Conflict(f"{profile.name} got a certificate meanwhile; it cannot be deleted.",
                       hint="Reissue or delete that certificate first.")
    s.commit()


@dataclass
class TestResult:
    ok: bool
    step: str = ""
    message: str = ""
    hint: str = ""
    detail: str = ""
    url: str = ""
    directory: DirectoryInfo | None = None
    account_url: str = ""
    account_status: str = ""
    notes: list[str] = field(default_factory=list)


def test(profile: CAProfile) -> TestResult:
    """Save and Test: fetch the directory within the API Timeout, then register or find the
    ACME account. Records the outcome on the profile."""
    result = _probe(profile, lambda _result: ensure_account(profile))
    if result.ok:
        result.account_url, result.account_status = profile.account_url, profile.account_status
        persist.probe(profile)  # which challenges the CA offers (dns-persist-01?); never fails the test
    profile.directory_meta = result.directory.meta if result.directory else profile.directory_meta
    profile.last_test_ok, profile.last_test_at = result.ok, utcnow()
    if result.ok:
        profile.healthy_again()  # failover counts from here: a tested CA can issue
    profile.last_test_message = result.message if result.ok else str_of(result)
    audit.record("CA profile tested", "ca_profile", profile.id,
                 f"{profile.name}: {'API is available' if result.ok else 'failed at ' + (result.step or 'test')}")
    db.session().commit()
    return result


def test_values(profile: CAProfile, values: dict[str, Any]) -> TestResult:
    """Test without saving: the form's values (ValidationError when a field is wrong) against
    the CA, the profile left exactly as it is. The account is looked up with the stored key when
    the CA is the same one; a new account is only ever registered by Save and Test."""
    clean = validate(profile, values)
    trial = CAProfile(module=profile.module, account_key=profile.account_key,
                      account_url=profile.account_url, account_directory=profile.account_directory,
                      **clean)
    result = _probe(trial, lambda found: _find_account(trial, found))
    audit.record("CA profile tested without saving", "ca_profile", profile.id,
                 f"{profile.name}: {'API is available' if result.ok else 'failed at ' + (result.step or 'test')}")
    db.session().commit()
    return result


def _find_account(trial: CAProfile, result: TestResult) -> None:
    url = directory_url(trial)
    if not (trial.account_key and trial.account_directory == url):
        result.notes.append("The ACME account is registered (and EAB credentials checked) when "
                            "you Save and Test.")
        return
    client = acme_client(trial, account_key=trial.account_key)
    try:
        account = client.find_account()
    finally:
        client.close()
    if account is None:
        result.notes.append("The CA knows no account for this profile's key: Save and Test registers one.")
    else:
        result.account_url, result.account_status = account.url, account.status


def _probe(profile: CAProfile, account) -> TestResult:
    """Fetch the directory within the API Timeout, check EAB, then `account(result)`; every failure
    worded as a step, a message and what to do."""
    result = TestResult(ok=False)
    try:
        plugin = plugin_for(profile)
        url = plugin.directory_url(view_of(profile))
        result.directory = probe_directory(url, timeout=profile.api_timeout,
                                           ca_bundle=ca_bundle_path(profile), url_check=address_problem,
                                           judge=checked_address)
        eab_required = bool(result.directory.meta.get("externalAccountRequired"))
        if plugin.account_per_certificate(view_of(profile)):
            creds = plugin.certificate_eab(view_of(profile), timeout=profile.api_timeout)
            result.notes.append(f"No account keys: each certificate gets its own ACME account "
                                f"with temporary EAB credentials (obtained {creds.source} OK).")
        else:
            if eab_required and not plugin.eab_credentials(view_of(profile), timeout=profile.api_timeout):
                raise AcmeError("EAB required but missing: this CA only accepts accounts with "
                                "External Account Binding.", step="register account", url=url,
                                hint="Fill in EAB Key ID and EAB HMAC Key from your CA account"
                                     + (" (or an account API key)" if plugin.supports_api_key else "")
                                     + ", then Save and Test again.")
            account(result)
        result.ok = True
        result.message = "API is available"
    except SSLManagerError as exc:
        result.step, result.message, result.hint = exc.step, exc.message, exc.hint
        result.detail, result.url = exc.detail, exc.url
        said = (getattr(exc, "problem_type", "") + exc.message).replace(" ", "").lower()
        if not result.hint and "externalaccount" in said:
            result.hint = ("Check the EAB Key ID and EAB HMAC Key: copy both again from your CA "
                           "account, then Save and Test.")
    return result


def active_certificates(profile: CAProfile) -> int:
    """How many Active certificates renew through the profile."""
    return db.session().scalar(select(func.count()).select_from(Certificate).where(
        Certificate.profile_id == profile.id, Certificate.status == "active")) or 0


def str_of(result: TestResult) -> str:
    """One line for lists and the CLI: step, message, the CA's words."""
    parts = [f"{result.step}: " if result.step else "", result.message]
    if result.detail:
        parts.append(f" — {result.detail}")
    return "".join(parts)
