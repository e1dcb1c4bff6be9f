"""Customers' own domains, end to end through the bus on the local stack: the stack's Knot DNS
answers whether a domain points at the platform (tests point names as a customer's DNS provider
would), the real API server validates every Certificate against cert-manager's CRD, and the
stack's stand-in issuer signs them (told to refuse a domain by its file)."""

import uuid
from typing import Any

import pytest
from kubernetes import client

from devstack.dns import CUSTOMER_ZONE, INGRESS_HOSTNAME, point
from devstack.issuer import REFUSED_FILE
from devstack.layout import default_layout
from k8s.certificates import build_certificate
from k8s.kinds import CERTIFICATE
from store.lifecycle import InstanceStatus
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data
from tests.tenant_specs import tenant_spec

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.dns]

T = "odoo.instance."


def pointed(kind: str = "CNAME", value: str = f"{INGRESS_HOSTNAME}.") -> str:
    """A fresh customer domain, pointed (by default) at the platform's ingress."""
    domain = f"shop-{uuid.uuid4().hex[:10]}.{CUSTOMER_ZONE}"
    point(domain, kind, value, default_layout())
    return domain


def running(driver: Lifecycle) -> str:
    """A provisioned, running instance."""
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    return instance_id


def refuse(domain: str) -> None:
    """Tell the stack's issuer to refuse `domain`."""
    with (default_layout().data / "issuer" / REFUSED_FILE).open("a") as listing:
        listing.write(f"{domain}\n")


def certificates(driver: Lifecycle, instance_id: str) -> dict[str, Any]:
    """The instance's Certificates by name, as the API server holds them."""
    custom = client.CustomObjectsApi(driver.api)
    listed: Any = custom.list_namespaced_custom_object(
        "cert-manager.io",
        "v1",
        driver.namespace,
        "certificates",
        label_selector=f"odoo.saas/instance-id={instance_id}",
    )
    return {item["metadata"]["name"]: item for item in listed["items"]}


def tls_secrets(driver: Lifecycle, instance_id: str) -> list[str]:
    """The names of the instance's domains' TLS Secrets."""
    core = client.CoreV1Api(driver.api)
    selector = f"odoo.saas/instance-id={instance_id},app.kubernetes.io/component=domain"
    listed = core.list_namespaced_secret(driver.namespace, label_selector=selector)
    return [str(secret.metadata.name) for secret in listed.items if secret.metadata]


def ingress_hosts(driver: Lifecycle, instance_id: str) -> tuple[list[str], dict[str, str]]:
    """The instance's Ingress: its rules' hosts, and each TLS host's Secret."""
    name = f"odoo-{uuid.UUID(instance_id).hex}"
    ingress = client.NetworkingV1Api(driver.api).read_namespaced_ingress(name, driver.namespace)
    spec = ingress.spec
    assert spec is not None
    hosts = [str(rule.host) for rule in spec.rules or []]
    tls = {
        str(host): str(entry.secret_name) for entry in spec.tls or [] for host in entry.hosts or []
    }
    return hosts, tls


def nothing_left(driver: Lifecycle, instance_id: str, domain: str) -> None:
    """No Certificate, TLS Secret, Ingress host or reservation of `domain` remains."""
    assert certificates(driver, instance_id) == {}
    assert tls_secrets(driver, instance_id) == []
    hosts, tls = ingress_hosts(driver, instance_id)
    assert domain not in hosts
    assert domain not in tls
    assert domain not in driver.ledger.domains()
    assert domain not in driver.instance(instance_id).domains


def test_a_domain_is_served_with_its_certificate_and_removed_without_a_trace(
    driver: Lifecycle,
) -> None:
    instance_id = running(driver)
    domain = pointed()
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": domain})
    assert event_kind(event) == "domain.added", event
    data = event["data"]
    assert data["url"] == f"https://{domain}"
    assert data["certificate"]["ready"] is True
    assert data["certificate"]["namespace"] == driver.namespace
    found = certificates(driver, instance_id)
    assert list(found) == [data["certificate"]["name"]]
    certificate = found[data["certificate"]["name"]]
    assert certificate["spec"]["dnsNames"] == [domain]
    assert certificate["spec"]["issuerRef"]["name"] == driver.domains.issuer_name
    secret = certificate["spec"]["secretName"]
    assert tls_secrets(driver, instance_id) == [secret]
    hosts, tls = ingress_hosts(driver, instance_id)
    assert hosts[1:] == [domain]  # the primary host stays first: web.base.url is its URL
    assert tls[domain] == secret
    record = driver.instance(instance_id)
    assert record.domains == (domain,)
    assert record.status is InstanceStatus.RUNNING
    assert driver.ledger.domains() == {domain: instance_id}

    # A repeat answers the same way and changes nothing.
    again = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": domain})
    assert event_kind(again) == "domain.added", again
    assert list(certificates(driver, instance_id)) == [data["certificate"]["name"]]

    removed = driver.run(f"{T}domain.remove.v1", {"instance_id": instance_id, "domain": domain})
    assert event_kind(removed) == "domain.removed", removed
    assert removed["data"] == {"instance_id": instance_id, "domain": domain}
    nothing_left(driver, instance_id, domain)
    assert driver.instance(instance_id).status is InstanceStatus.RUNNING
    # Removing it again: nothing to do, the same answer.
    twice = driver.run(f"{T}domain.remove.v1", {"instance_id": instance_id, "domain": domain})
    assert event_kind(twice) == "domain.removed", twice


def test_a_stopped_or_held_instance_takes_a_domain_and_keeps_it_until_deleted(
    driver: Lifecycle,
) -> None:
    instance_id = running(driver)
    assert event_kind(driver.run(f"{T}stop.v1", {"instance_id": instance_id})) == "stopped"
    domain = pointed("A", "192.0.2.10")  # an A record at the ingress's address also points
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": domain})
    assert event_kind(event) == "domain.added", event
    terminate = {"instance_id": instance_id, "reason": "subscription_cancelled"}
    assert event_kind(driver.run(f"{T}terminate.v1", terminate)) == "terminated"
    # Terminated: still its own, reserved; another instance cannot take it.
    assert driver.instance(instance_id).domains == (domain,)
    other = running(driver)
    refused = driver.run(f"{T}domain.add.v1", {"instance_id": other, "domain": domain})
    assert event_kind(refused) == "command.rejected", refused
    assert refused["data"]["error"]["code"] == "conflict"
    delete = {"instance_id": instance_id, "final_backup": False}
    assert event_kind(driver.run(f"{T}delete.v1", delete)) == "deleted"
    assert certificates(driver, instance_id) == {}
    assert tls_secrets(driver, instance_id) == []
    assert domain not in driver.ledger.domains()
    # Deleted: free for another instance.
    taken = driver.run(f"{T}domain.add.v1", {"instance_id": other, "domain": domain})
    assert event_kind(taken) == "domain.added", taken


def test_refusals_and_failures_each_leave_nothing_behind(driver: Lifecycle) -> None:
    instance_id = running(driver)

    under_base = f"shop.{driver.tenants.base_domain}"
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": under_base})
    assert event_kind(event) == "command.rejected", event
    assert event["data"]["error"]["code"] == "invalid_data"
    assert "data.domain" in str(event["data"]["error"]["details"])

    elsewhere = pointed("A", "198.51.100.7")
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": elsewhere})
    assert event_kind(event) == "command.failed", event
    assert event["data"]["error"]["code"] == "domain_not_pointed"
    assert "198.51.100.7" in event["data"]["error"]["message"]
    assert event["data"]["rolled_back"] is True
    nothing_left(driver, instance_id, elsewhere)

    never = f"never-{uuid.uuid4().hex[:8]}.{CUSTOMER_ZONE}"
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": never})
    assert event["data"]["error"]["code"] == "domain_not_pointed", event
    assert "no CNAME, A or AAAA record" in event["data"]["error"]["message"]

    declined = pointed()
    refuse(declined)
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": declined})
    assert event_kind(event) == "command.failed", event
    assert event["data"]["error"]["code"] == "certificate_failed"
    assert "refused" in event["data"]["error"]["message"]
    assert event["data"]["rolled_back"] is True
    nothing_left(driver, instance_id, declined)
    assert driver.instance(instance_id).status is InstanceStatus.RUNNING

    held = pointed()
    added = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": held})
    assert event_kind(added) == "domain.added", added
    other = running(driver)
    event = driver.run(f"{T}domain.add.v1", {"instance_id": other, "domain": held})
    assert event_kind(event) == "command.rejected", event
    assert event["data"]["error"]["code"] == "conflict"
    assert certificates(driver, other) == {}
    assert driver.ledger.domains()[held] == instance_id


def test_two_instances_racing_for_one_domain_one_wins(driver: Lifecycle) -> None:
    first, second = running(driver), running(driver)
    domain = pointed()
    ids = [
        driver.send(f"{T}domain.add.v1", {"instance_id": instance, "domain": domain})
        for instance in (first, second)
    ]
    events = [driver.terminal(command_id) for command_id in ids]
    kinds = sorted(event_kind(event) for event in events)
    assert kinds == ["command.rejected", "domain.added"], events
    winner = first if event_kind(events[0]) == "domain.added" else second
    loser = second if winner == first else first
    rejected = next(e for e in events if event_kind(e) == "command.rejected")
    assert rejected["data"]["error"]["code"] == "conflict"
    assert driver.ledger.domains() == {domain: winner}
    assert certificates(driver, loser) == {}
    assert len(certificates(driver, winner)) == 1


def test_reconcile_repairs_a_domain_and_reports_a_certificate_of_no_instance(
    driver: Lifecycle,
) -> None:
    instance_id = running(driver)
    domain = pointed()
    event = driver.run(f"{T}domain.add.v1", {"instance_id": instance_id, "domain": domain})
    assert event_kind(event) == "domain.added", event
    name = event["data"]["certificate"]["name"]
    custom = client.CustomObjectsApi(driver.api)
    custom.delete_namespaced_custom_object(
        "cert-manager.io", "v1", driver.namespace, "certificates", name
    )
    # The Ingress edited by hand: the customer's host gone.
    primary = f"odoo-{uuid.UUID(instance_id).hex}"
    networking = client.NetworkingV1Api(driver.api)
    ingress = networking.read_namespaced_ingress(primary, driver.namespace)
    assert ingress.spec is not None
    ingress.spec.rules = (ingress.spec.rules or [])[:1]
    networking.replace_namespaced_ingress(primary, driver.namespace, ingress)
    # A Certificate of ours whose instance the store never heard of.
    stray_id, _ = new_instance()
    stray = build_certificate(
        tenant_spec(instance_id=stray_id, domains=("stray.example",)),
        "stray.example",
        driver.domains,
        driver.namespace,
    )
    driver.platform.cluster().apply(CERTIFICATE, stray)

    reconciled = driver.run("odoo.fleet.reconcile.v1", {})
    assert reconciled["data"]["repaired"] == 1, reconciled
    assert reconciled["data"]["orphans"] == 1, reconciled
    assert list(certificates(driver, instance_id)) == [name]
    hosts, tls = ingress_hosts(driver, instance_id)
    assert domain in hosts
    assert domain in tls
    assert stray["metadata"]["name"] in certificates(driver, stray_id)  # reported, not removed
