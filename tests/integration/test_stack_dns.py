"""The stack's DNS server answers for the customers' test zone, and takes a customer's record
the way a customer's DNS provider would publish it (an RFC 2136 update from loopback)."""

import uuid

import dns.query
import dns.rcode
import dns.resolver
import dns.update
import pytest

from devstack.dns import CUSTOMER_ZONE
from devstack.layout import LOOPBACK, default_layout
from tests import stack

pytestmark = pytest.mark.dns


def _resolver() -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [LOOPBACK]
    resolver.port = default_layout().ports.dns
    return resolver


def test_a_name_pointed_by_an_update_resolves_and_one_never_pointed_does_not() -> None:
    stack.require("dns")
    name = f"shop-{uuid.uuid4().hex[:8]}"
    update = dns.update.Update(CUSTOMER_ZONE)
    update.replace(name, 60, "CNAME", "ingress.odoo.test.")
    answer = dns.query.tcp(update, LOOPBACK, port=default_layout().ports.dns, timeout=5)
    assert answer.rcode() == dns.rcode.NOERROR
    resolved = _resolver().resolve(f"{name}.{CUSTOMER_ZONE}", "CNAME")
    assert [str(record.target) for record in resolved] == ["ingress.odoo.test."]
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolver().resolve(f"never-{name}.{CUSTOMER_ZONE}", "A")
