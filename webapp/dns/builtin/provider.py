"""BuiltinProvider: writes TXT values to SSL Manager's own database (sslm_dns_record), which
the builtin server (server.py) serves. No Flask here: it is handed an SQLAlchemy Engine."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..base import DnsProvider, Health, ProviderOption, register
from .zone import DEFAULT_NEGATIVE_TTL, RECORDS, ZONES, parse_listen, parse_zone_options

MAX_TTL = 2**31 - 1


def _reachable(host: str) -> str:
    """The address to query for a listen address: a wildcard means 'this host'."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


@register
class BuiltinProvider(DnsProvider):
    """Writes TXT values into SSL Manager's database; the builtin DNS server serves them.

    Besides the zone and its options the provider needs the database: pass the SQLAlchemy
    Engine as options["_engine"] (it is not a setting, so it is never shown or stored).
    """

    name = "builtin"
    label = "Builtin DNS server (SSL Manager serves the zone itself)"
    options = (
        ProviderOption("listen", "Server address(es)",
                       help="Where `sslmanager dns serve` answers, as host:port, comma "
                            "separated; used for the health check and the propagation poll."),
        ProviderOption("nameservers", "Nameserver names",
                       help="NS names the zone is delegated to, comma separated "
                            "(default ns1.<zone>)."),
        ProviderOption("hostmaster", "Hostmaster", help="SOA contact (default hostmaster.<zone>)."),
        ProviderOption("addresses", "Glue addresses",
                       help="For nameservers inside the zone: name=ip ip; name2=ip"),
        ProviderOption("negative_ttl", "Negative TTL", default=str(DEFAULT_NEGATIVE_TTL),
                       help="Seconds a resolver may cache 'no such record'."),
    )

    def __init__(self, zone: str, options: dict[str, Any], **kw):
        options = dict(options)
        engine = options.pop("_engine", None)
        # The zone row stores lists/mappings as JSON; the base class wants text per option.
        for key in ("nameservers", "addresses"):
            if isinstance(options.get(key), list):
                options[key] = ", ".join(options[key])
            elif isinstance(options.get(key), dict):
                options[key] = "; ".join(
                    f"{host}={' '.join(ips if isinstance(ips, list) else [ips])}"
                    for host, ips in options[key].items())
        options = {k: v if isinstance(v, str) else str(v) for k, v in options.items()
                   if v is not None}
        super().__init__(zone, options, **kw)
        if not isinstance(engine, Engine):
            raise self.error("no database engine given (options['_engine'])")
        self.engine = engine
        self.listen = parse_listen(self.settings["listen"])

    @classmethod
    def validate_options(cls, options: dict[str, str]) -> dict[str, str]:
        errors = super().validate_options(options)
        try:
            parse_listen(options.get("listen", ""))
        except ValueError as exc:
            errors["listen"] = f"Use host:port, comma separated, e.g. 127.0.0.1:5353 ({exc})."
        try:
            parse_zone_options("example.invalid", options)
        except ValueError as exc:
            key, _, message = str(exc).partition(": ")
            errors[key if key in {o.name for o in cls.options} else "nameservers"] = message
        return errors

    # -- interface -----------------------------------------------------------------------

    def add_txt(self, records: list[tuple[str, str]], ttl: int, *,
                certificate_id: int | None = None) -> None:
        """Insert every value missing at its name, in one transaction (add, never replace)."""
        records = list(dict.fromkeys(self.check_in_zone(records)))
        if not records:
            return
        ttl = max(0, min(int(ttl), MAX_TTL))
        try:
            with self.engine.begin() as conn:
                present = set(conn.execute(
                    select(RECORDS.c.name, RECORDS.c.value).where(
                        RECORDS.c.zone == self.zone,
                        RECORDS.c.name.in_({name for name, _ in records}))).all())
                rows = [{"zone": self.zone, "name": name, "value": value, "ttl": ttl,
                         "certificate_id": certificate_id}
                        for name, value in records if (name, value) not in present]
                if rows:
                    conn.execute(insert(RECORDS), rows)
        except SQLAlchemyError as exc:
            raise self._db_error("add TXT records", exc) from None

    def remove_txt(self, records: list[tuple[str, str]]) -> None:
        """Delete the rows of exactly these (name, value) pairs; absent ones are no error."""
        records = list(dict.fromkeys(self.check_in_zone(records)))
        if not records:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(RECORDS).where(
                    RECORDS.c.zone == self.zone,
                    tuple_(RECORDS.c.name, RECORDS.c.value).in_(records)))
        except SQLAlchemyError as exc:
            raise self._db_error("remove TXT records", exc) from None

    def list_txt(self) -> dict[str, list[str]]:
        """Every name in the zone's records -> its values, as the server would serve them."""
        found: dict[str, set[str]] = defaultdict(set)
        try:
            with self.engine.connect() as conn:
                for name, value in conn.execute(select(RECORDS.c.name, RECORDS.c.value)
                                                .where(RECORDS.c.zone == self.zone)):
                    found[name].add(value)
        except SQLAlchemyError as exc:
            raise self._db_error("list TXT records", exc) from None
        return {name: sorted(values) for name, values in sorted(found.items())}

    def health(self) -> Health:
        """The zone row exists with provider builtin, and each listen address answers its SOA."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(ZONES.c.provider, ZONES.c.options)
                                   .where(ZONES.c.name == self.zone)).first()
        except SQLAlchemyError as exc:
            return Health(False, str(self._db_error("read the zone", exc)))
        if row is None:
            return Health(False, f"{self.name}: zone {self.zone} is not in the database; "
                                 "add it as a technical zone first.")
        if row.provider != self.name:
            return Health(False, f"{self.name}: zone {self.zone} is set to provider "
                                 f"{row.provider!r}, so the builtin server does not serve it.")
        try:
            parse_zone_options(self.zone, row.options)
        except ValueError as exc:
            return Health(False, f"{self.name}: zone {self.zone} has invalid settings ({exc}).")
        if not self.listen:
            return Health(True, f"{self.name}: zone {self.zone} is served from the database "
                                "(no server address set, so none was asked).")
        problems, serials = [], []
        for host, port in self.listen:
            try:
                serials.append(self._soa_serial(_reachable(host), port))
            except Exception as exc:  # every failure is reported, none is fatal here
                problems.append(f"{host}:{port} {exc}")
        if problems:
            return Health(False, f"{self.name}: zone {self.zone}: " + "; ".join(problems)
                          + ". Start it with `sslmanager dns serve --listen ADDR:PORT`.")
        where = ", ".join(f"{h}:{p}" for h, p in self.listen)
        return Health(True, f"{self.name}: zone {self.zone} is served at {where} "
                            f"(SOA serial {', '.join(map(str, sorted(set(serials))))}).")

    def authoritative_servers(self) -> list[tuple[str, int]]:
        """The listen addresses (a wildcard becomes loopback): poll these after a write."""
        return [(_reachable(host), port) for host, port in self.listen]

    # -- helpers -------------------------------------------------------------------------

    def _soa_serial(self, host: str, port: int) -> int:
        """The SOA serial the server at host:port answers for the zone; raise with the reason."""
        query = dns.message.make_query(self.zone, dns.rdatatype.SOA)
        try:
            reply, _ = dns.query.udp_with_fallback(query, host, port=port, timeout=self.timeout)
        except dns.exception.Timeout:
            raise RuntimeError("does not answer (timeout)") from None
        except OSError as exc:
            raise RuntimeError(f"cannot be reached ({exc.strerror or exc})") from None
        if reply.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"answered {dns.rcode.to_text(reply.rcode())} for the SOA")
        if not reply.flags & dns.flags.AA or not reply.answer:
            raise RuntimeError("answered without an authoritative SOA")
        return reply.answer[0][0].serial

    def _db_error(self, step: str, exc: SQLAlchemyError):
        # The driver's first line only: full statements may be long and carry values.
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return self.error(f"database error: {detail}", step=step,
                          hint="Check that the database is reachable and migrated.")
