"""The domain check (k8s/pointing.py) against the stack's real DNS server: what a customer's DNS
provider publishes decides, through dnspython, never a command's output."""

import socket
import uuid

import pytest

from devstack.dns import CUSTOMER_ZONE, INGRESS_ADDRESS, INGRESS_HOSTNAME, point
from devstack.layout import default_layout
from k8s.pointing import check_pointing
from messages.errors import RetryableError
from tests.handlers.harness import domain_settings

pytestmark = pytest.mark.dns


def _name() -> str:
    return f"check-{uuid.uuid4().hex[:10]}.{CUSTOMER_ZONE}"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("CNAME", f"{INGRESS_HOSTNAME}."),
        ("A", INGRESS_ADDRESS),
    ],
)
def test_a_domain_pointed_at_the_ingress_points(kind: str, value: str) -> None:
    domain = _name()
    point(domain, kind, value, default_layout())
    assert check_pointing(domain, domain_settings()).problem is None


def test_a_cname_chain_ending_at_the_ingress_address_points_with_addresses_configured() -> None:
    hop, domain = _name(), _name()
    point(hop, "A", INGRESS_ADDRESS, default_layout())
    point(domain, "CNAME", f"{hop}.", default_layout())
    assert check_pointing(domain, domain_settings()).problem is None
    # With only the hostname configured, its own addresses are the ingress's.
    by_name = domain_settings(ingress_addresses=())
    assert check_pointing(domain, by_name).problem is None


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        ("A", "198.51.100.7", "it resolves to 198.51.100.7"),
        ("CNAME", "elsewhere.example.", "its CNAME is elsewhere.example"),
        (None, None, "it has no CNAME, A or AAAA record"),
    ],
)
def test_a_domain_elsewhere_or_nowhere_does_not_point(
    kind: str | None, value: str | None, says: str
) -> None:
    domain = _name()
    if kind is not None and value is not None:
        point(domain, kind, value, default_layout())
    problem = check_pointing(domain, domain_settings()).problem
    assert problem is not None
    assert says in problem
    assert f"a CNAME to {INGRESS_HOSTNAME}" in problem
    assert INGRESS_ADDRESS in problem


def test_a_resolver_that_does_not_answer_is_a_passing_failure() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    silent = domain_settings(resolver_port=port, resolver_timeout_seconds=1)
    with pytest.raises(RetryableError, match="DNS did not answer"):
        check_pointing(_name(), silent)
