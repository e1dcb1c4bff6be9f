"""A real authoritative DNS server for the stack's test zones: Knot DNS (Debian's `knot`).

Customers point their own domains at the platform (a CNAME to its ingress name, or A/AAAA to its
addresses) before `domain.add`; the service checks that through a configurable resolver. On the
local stack the customers' zone `customer.test` is served by knotd on 127.0.0.1 (UDP and TCP),
beside the platform's `platform.test` (its ingress, `ingress.platform.test`, at 192.0.2.10), and
tests point names as a customer would, through RFC 2136 dynamic updates (dnspython), which
Knot accepts from loopback only. The zone lives in Knot's journal under the stack's data (its
file is written once, with SOA and NS); `down` stops knotd, its records stay.

Debian-packaged rather than built: no Go build to add to a new machine's first run.
"""

import shutil
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from devstack import processes
from devstack.component import Health
from devstack.layout import LOOPBACK, Layout

NAME = "knot"
CUSTOMER_ZONE = "customer.test"
"""The zone tests put customers' own domains in."""
PLATFORM_ZONE = "platform.test"
INGRESS_HOSTNAME = f"ingress.{PLATFORM_ZONE}"
"""The platform's ingress as customers point at it (`devstack env`: DOMAINS__INGRESS_*)."""
INGRESS_ADDRESS = "192.0.2.10"
"""Its address: TEST-NET-1 (RFC 5737), a name only; nothing on loopback serves it."""
READY_SECONDS = 30.0

CONFIG = """\
server:
    listen: {address}@{port}
    rundir: {run}
database:
    storage: {database}
log:
  - target: stderr
    any: info
acl:
  - id: loopback_update
    address: 127.0.0.1
    action: update
template:
  - id: default
    storage: {zones}
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: difference-no-serial
    journal-content: all
zone:
  - domain: {zone}
    acl: loopback_update
  - domain: {platform}
"""

ZONE = """\
$ORIGIN {zone}.
$TTL 60
@ SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@ NS ns.{zone}.
ns A {address}
"""
PLATFORM_RECORDS = f"ingress A {INGRESS_ADDRESS}\n"


def knotd() -> str:
    """The knotd binary (Debian's `knot` package, installed by scripts/bootstrap.sh)."""
    found = shutil.which("knotd") or (
        "/usr/sbin/knotd" if Path("/usr/sbin/knotd").exists() else None
    )
    if found is None:
        raise processes.StackError(
            "knotd not found: install Debian's `knot` (scripts/bootstrap.sh)"
        )
    return found


class KnotDns:
    """Knot DNS on 127.0.0.1, serving the customers' test zone."""

    name = "dns"
    builds = ()

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.home = layout.data / "knot"
        self.port = layout.ports.dns
        self.config = self.home / "knot.conf"

    def _write(self) -> None:
        zones, database, run = self.home / "zones", self.home / "db", self.home / "run"
        for directory in (zones, database, run):
            directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            CONFIG.format(
                address=LOOPBACK,
                port=self.port,
                run=run,
                database=database,
                zones=zones,
                zone=CUSTOMER_ZONE,
                platform=PLATFORM_ZONE,
            )
        )
        for zone, records in ((CUSTOMER_ZONE, ""), (PLATFORM_ZONE, PLATFORM_RECORDS)):
            zone_file = zones / f"{zone}.zone"
            if not zone_file.exists():
                zone_file.write_text(ZONE.format(zone=zone, address=LOOPBACK) + records)

    def _ready(self) -> bool:
        query = dns.message.make_query(CUSTOMER_ZONE, dns.rdatatype.SOA)
        try:
            answer = dns.query.udp(query, LOOPBACK, port=self.port, timeout=1.0)
        except (dns.exception.DNSException, OSError):
            return False
        return bool(answer.answer)

    def up(self) -> None:
        """Start knotd unless it runs, and wait until it answers for the zone."""
        if processes.pid_of(self.layout, NAME) is None:
            processes.ensure_port_free(self.port, "Knot DNS")
            self._write()
            processes.start(self.layout, NAME, [knotd(), "-c", str(self.config)], cwd=self.home)
        if not processes.wait_until(self._ready, READY_SECONDS, interval=0.25):
            raise processes.StackError(
                f"Knot DNS did not answer for {CUSTOMER_ZONE} on {LOOPBACK}:{self.port}\n"
                f"{processes.log_tail(self.layout, NAME)}"
            )

    def down(self) -> None:
        """Stop it (its zone's records stay in its journal)."""
        processes.stop(self.layout, NAME)

    def health(self) -> list[Health]:
        """Whether it answers for the customers' zone."""
        return [Health(NAME, self._ready(), f"DNS {LOOPBACK}:{self.port}, zone {CUSTOMER_ZONE}")]


def point(name: str, kind: str, value: str, layout: Layout) -> None:
    """Publish one record in the customers' zone, as a customer's DNS provider would: an RFC
    2136 update from loopback replacing `name`'s records of `kind` (e.g. CNAME
    ingress.platform.test. or A 192.0.2.10)."""
    import dns.rcode  # only tests and demos point names
    import dns.update

    update = dns.update.Update(CUSTOMER_ZONE)
    relative = name.removesuffix(f".{CUSTOMER_ZONE}")
    update.replace(relative, 60, kind, value)
    answer = dns.query.tcp(update, LOOPBACK, port=layout.ports.dns, timeout=5)
    if answer.rcode() != dns.rcode.NOERROR:
        raise processes.StackError(
            f"Knot DNS refused the update of {name} {kind}: {dns.rcode.to_text(answer.rcode())}"
        )
