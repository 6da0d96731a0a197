"""The marshmallow schemas: what each request may hold (unknown fields are refused, naming
them) and what each answer holds. The OpenAPI document is generated from these. They check the
JSON's shape only; the rules (a name a CA accepts, a profile that works, a tag's spelling) are
the services' own, the same for the pages, the commands and the API."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..crypto import KEY_TYPES
from ..services.certificates import REVOCATION_REASONS, STATUSES
from ..services.tags import MAX_TAGS, TAG

MAX_ID = 2 ** 63 - 1
Id = lambda **kw: fields.Integer(strict=True, validate=validate.Range(1, MAX_ID), **kw)  # noqa: E731
Tag = lambda **kw: fields.String(validate=validate.Regexp(TAG.pattern + r"\Z"), **kw)  # noqa: E731
When = lambda **kw: fields.DateTime(allow_none=True, **kw)  # noqa: E731


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class Empty(Strict):
    """No body, or an empty JSON object."""


# -- queries -------------------------------------------------------------------------------------

class PageQuery(Strict):
    page = fields.Integer(load_default=1, validate=validate.Range(1, 2 ** 31))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class CertificateQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(STATUSES))
    q = fields.String(validate=validate.Length(max=253), metadata={"description": "domain search"})
    tag = Tag()
    profile_id = Id()


class NameQuery(PageQuery):
    q = fields.String(validate=validate.Length(max=253), metadata={"description": "name search"})


class EventQuery(PageQuery):
    action = fields.String(validate=validate.Length(max=64))
    actor = fields.String(validate=validate.Length(max=150))
    object_type = fields.String(validate=validate.Length(max=32))
    q = fields.String(validate=validate.Length(max=253))


class Paged(ma.Schema):
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    total = fields.Integer(required=True)
    pages = fields.Integer(required=True)


# -- certificates ----------------------------------------------------------------------------------

class CertificateCreate(Strict):
    domains = fields.List(fields.String(validate=validate.Length(1, 253)), required=True,
                          validate=validate.Length(1, 1000),
                          metadata={"description": "names, apex and *.wildcard; IDNs in Unicode or punycode"})
    profile_id = Id(required=True, metadata={"description": "the CA profile"})
    key_type = fields.String(load_default="ec-p256", validate=validate.OneOf(list(KEY_TYPES)))
    acme_profile = fields.String(load_default="", validate=validate.Length(max=64),
                                 metadata={"description": "an ACME profile the CA offers (e.g. shortlived)"})
    auto_renew = fields.Boolean(load_default=True)
    reuse_key = fields.Boolean(load_default=False)
    tags = fields.List(Tag(), load_default=list, validate=validate.Length(max=MAX_TAGS))
    request = fields.Boolean(load_default=True, metadata={
        "description": "true: make the key and CSR and wait for the CNAMEs (Pending); false: a Draft"})


class Revoke(Strict):
    reason = fields.Integer(load_default=0, validate=validate.OneOf(list(REVOCATION_REASONS)),
                            metadata={"description": "RFC 5280: " + ", ".join(
                                f"{k} {v}" for k, v in REVOCATION_REASONS.items())})


class DeleteQuery(Strict):
    confirm = fields.String(load_default="", validate=validate.Length(max=253),
                            metadata={"description": "an Active certificate: its first name, as on its page"})


class Tags(Strict):
    tags = fields.List(Tag(), required=True, validate=validate.Length(max=MAX_TAGS))


class TagsOut(ma.Schema):
    tags = fields.List(fields.String(), required=True)


class DnsRecord(ma.Schema):
    domain = fields.String(required=True)
    domain_unicode = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "_acme-challenge.<domain>"})
    type = fields.String(required=True, metadata={"description": "always CNAME"})
    target = fields.String(required=True)
    record = fields.String(required=True, metadata={"description": "the zone-file line"})


class Ari(ma.Schema):
    window_start = When()
    window_end = When()
    explanation_url = fields.String(allow_none=True)
    last_poll = When()
    next_poll = When()


class Version(ma.Schema):
    number = fields.Integer(required=True)
    serial = fields.String(required=True)
    issuer = fields.String(required=True)
    not_before = When()
    not_after = When()
    revoked_at = When()
    created_at = When()


class CertificateSummary(ma.Schema):
    id = fields.Integer(required=True)
    domains = fields.List(fields.String(), required=True)
    domains_unicode = fields.List(fields.String(), required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    step = fields.String(required=True)
    progress = fields.Integer(allow_none=True)
    profile_id = fields.Integer(required=True)
    key_type = fields.String(required=True)
    acme_profile = fields.String(required=True)
    auto_renew = fields.Boolean(required=True)
    tags = fields.List(fields.String(), required=True)
    serial = fields.String(required=True)
    not_before = When()
    not_after = When()
    days_remaining = fields.Integer(allow_none=True)
    renew_at = When()
    last_error = fields.String(required=True)
    created_at = When()


class Certificate(CertificateSummary):
    reuse_key = fields.Boolean(required=True)
    renew_reason = fields.String(required=True)
    ari = fields.Nested(Ari, required=True)
    last_error_hint = fields.String(required=True)
    failing_since = When()
    dns_records = fields.List(fields.Nested(DnsRecord), required=True,
                              metadata={"description": "the CNAME per base domain the owner must create"})
    versions = fields.List(fields.Nested(Version), required=True)
    updated_at = When()


class CertificatePage(Paged):
    items = fields.List(fields.Nested(CertificateSummary), required=True)


class Started(ma.Schema):
    result = fields.String(required=True, metadata={"description": "what was started"})
    certificate = fields.Nested(Certificate, required=True)


# -- material --------------------------------------------------------------------------------------

class MaterialQuery(Strict):
    version = fields.Integer(validate=validate.Range(1, 2 ** 31), metadata={"description": "default: current"})
    include_key = fields.Boolean(load_default=False, metadata={"description": "needs keys:read"})


class VersionQuery(Strict):
    version = fields.Integer(validate=validate.Range(1, 2 ** 31), metadata={"description": "default: current"})


class Pem(ma.Schema):
    certificate_id = fields.Integer(required=True)
    version = fields.Integer(required=True)
    serial = fields.String(required=True)
    not_after = When()
    cert = fields.String(required=True)
    chain = fields.String(required=True)
    fullchain = fields.String(required=True)
    key = fields.String(metadata={"description": "only with include_key=true (keys:read)"})


class Pkcs12Request(Strict):
    password = fields.String(required=True, validate=validate.Length(8, 1024))
    legacy = fields.Boolean(load_default=False, metadata={"description": "3DES/SHA-1 for older systems"})
    version = fields.Integer(validate=validate.Range(1, 2 ** 31))


# -- CA profiles, zones, events ----------------------------------------------------------------------

class Profile(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    module = fields.String(required=True)
    email = fields.String(required=True)
    dns_zone = fields.String(required=True)
    allow_wildcard = fields.Boolean(required=True)
    dns_ttl = fields.Integer(required=True)
    api_timeout = fields.Integer(required=True)
    account_url = fields.String(required=True)
    account_status = fields.String(required=True)
    acme_profiles = fields.List(fields.String(), required=True, metadata={"description": "offered by the CA"})
    last_test_ok = fields.Boolean(allow_none=True)
    last_test_at = When()
    last_test_message = fields.String(required=True)
    certificates = fields.Integer(required=True)


class ProfilePage(Paged):
    items = fields.List(fields.Nested(Profile), required=True)


class TestResult(ma.Schema):
    ok = fields.Boolean(required=True)
    step = fields.String(required=True)
    message = fields.String(required=True)
    hint = fields.String(required=True)
    detail = fields.String(required=True)
    url = fields.String(required=True)
    account_url = fields.String(required=True)
    account_status = fields.String(required=True)
    notes = fields.List(fields.String(), required=True)
    endpoints = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), required=True)


class Zone(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    provider = fields.String(required=True)
    last_check_ok = fields.Boolean(allow_none=True)
    last_check_at = When()
    last_check_message = fields.String(required=True)


class ZonePage(Paged):
    items = fields.List(fields.Nested(Zone), required=True)


class Event(ma.Schema):
    id = fields.Integer(required=True)
    at = When()
    actor = fields.String(required=True)
    action = fields.String(required=True)
    object_type = fields.String(required=True)
    object_id = fields.String(required=True)
    summary = fields.String(required=True)


class EventPage(Paged):
    items = fields.List(fields.Nested(Event), required=True)
