"""Customers' domains in the store: reserved when an add begins, served once it succeeds, freed
by a failed add, a remove or a delete, unique across the fleet (two racing adds: one wins), and
at most `max_domains` per instance; on both databases."""

import threading

import pytest
from sqlalchemy.engine import Engine

from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, RejectionCode
from messages.events import (
    CertificateReference,
    CommandFailedData,
    CommandFailedEvent,
    DomainAddedData,
    DomainAddedEvent,
    DomainRemovedData,
    DomainRemovedEvent,
    ErrorInfo,
    Event,
)
from store.ledger import Ledger
from store.records import InstanceUpdate, Outcome
from store.starting import RaceLostError, Started
from tests.catalog import MACHINE
from tests.store.conftest import command
from tests.store.test_ledger import OTHER_ID, _done, _provision, _provisioned

INSTANCE = "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f"
DOMAIN = "erp.acme.example"


def _provision_other(ledger: Ledger) -> None:
    cmd = command("odoo.instance.provision.v1", seconds=1, instance_id=OTHER_ID, subdomain="other")
    _done(ledger, cmd, _provisioned(cmd))


def _add(instance_id: str, seconds: float, domain: str = DOMAIN) -> AnyCommand:
    return command(
        "odoo.instance.domain.add.v1",
        command_id=f"add-{instance_id[:4]}-{seconds:g}",
        seconds=seconds,
        instance_id=instance_id,
        domain=domain,
    )


def _remove(instance_id: str, seconds: float, domain: str = DOMAIN) -> AnyCommand:
    return command(
        "odoo.instance.domain.remove.v1",
        command_id=f"remove-{instance_id[:4]}-{seconds:g}",
        seconds=seconds,
        instance_id=instance_id,
        domain=domain,
    )


def _added(cmd: AnyCommand) -> Event:
    assert isinstance(cmd, InstanceCommand)
    domain = str(getattr(cmd.data, "domain"))  # noqa: B009 - any instance command's data
    reference = CertificateReference(namespace="tenants", name="odoo-x-d-1", ready=True)
    data = DomainAddedData(
        instance_id=cmd.subject, domain=domain, url=f"https://{domain}", certificate=reference
    )
    return DomainAddedEvent.caused_by(cmd, data)


def _removed(cmd: AnyCommand) -> Event:
    assert isinstance(cmd, InstanceCommand)
    domain = str(getattr(cmd.data, "domain"))  # noqa: B009 - any instance command's data
    data = DomainRemovedData(instance_id=cmd.subject, domain=domain)
    return DomainRemovedEvent.caused_by(cmd, data)


def _fail(ledger: Ledger, cmd: AnyCommand, *, rolled_back: bool) -> None:
    assert isinstance(cmd, InstanceCommand)
    data = CommandFailedData(
        instance_id=cmd.subject,
        command_id=cmd.id,
        command_type=cmd.type,
        error=ErrorInfo(code="certificate_failed", message="the issuer refused it"),
        rolled_back=rolled_back,
    )
    update = InstanceUpdate(last_error="the issuer refused it", rolled_back=rolled_back)
    ledger.record(cmd, Outcome.FAILED, CommandFailedEvent.caused_by(cmd, data), update=update)


def test_an_add_reserves_the_domain_as_it_begins_and_serves_it_once_done(
    ledger: Ledger,
) -> None:
    _provision(ledger)
    add = _add(INSTANCE, 10)
    with ledger.exclusive(add):
        ledger.begin(add, ledger.admit(add))
    assert ledger.domains() == {DOMAIN: INSTANCE}
    record = ledger.instance(INSTANCE)
    assert record is not None
    assert record.domains == ()  # reserved, not served yet
    assert record.status.value == "changing_domains"
    ledger.record(add, Outcome.SUCCEEDED, _added(add))
    record = ledger.instance(INSTANCE)
    assert record is not None
    assert record.domains == (DOMAIN,)
    assert record.status.value == "running"
    assert [r.domains for r in ledger.instances()] == [(DOMAIN,)]


def test_another_instance_is_refused_the_domain_from_the_moment_it_is_reserved(
    ledger: Ledger,
) -> None:
    _provision(ledger)
    _provision_other(ledger)
    add = _add(INSTANCE, 10)
    with ledger.exclusive(add):
        ledger.begin(add, ledger.admit(add))
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(_add(OTHER_ID, 11))
    assert refused.value.code is RejectionCode.CONFLICT
    assert [d.field for d in refused.value.details] == ["data.domain"]


def test_a_failed_add_frees_what_it_reserved_and_a_failed_repeat_keeps_what_is_served(
    ledger: Ledger,
) -> None:
    _provision(ledger)
    first = _add(INSTANCE, 10)
    with ledger.exclusive(first):
        ledger.begin(first, ledger.admit(first))
    _fail(ledger, first, rolled_back=True)
    assert ledger.domains() == {}
    _done(ledger, _add(INSTANCE, 11), _added(_add(INSTANCE, 11)))
    repeat = _add(INSTANCE, 12)
    with ledger.exclusive(repeat):
        ledger.begin(repeat, ledger.admit(repeat))
    _fail(ledger, repeat, rolled_back=False)
    assert ledger.domains() == {DOMAIN: INSTANCE}


def test_a_remove_frees_its_domain_and_a_delete_every_domain_of_its_instance(
    ledger: Ledger,
) -> None:
    _provision(ledger)
    for number, domain in enumerate(("a.acme.example", "b.acme.example", "c.acme.example")):
        add = _add(INSTANCE, 10 + number, domain)
        _done(ledger, add, _added(add))
    remove = _remove(INSTANCE, 20, "a.acme.example")
    _done(ledger, remove, _removed(remove))
    assert sorted(ledger.domains()) == ["b.acme.example", "c.acme.example"]
    delete = command("odoo.instance.delete.v1", seconds=30, instance_id=INSTANCE)
    _done(ledger, delete)
    assert ledger.domains() == {}


def test_an_instance_has_at_most_its_limit_of_domains_repeats_aside(engine: Engine) -> None:
    ledger = Ledger(engine, MACHINE, max_domains=1)
    _provision(ledger)
    first = _add(INSTANCE, 10)
    _done(ledger, first, _added(first))
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(_add(INSTANCE, 11, "other.acme.example"))
    assert refused.value.code is RejectionCode.NOT_ALLOWED_IN_STATE
    assert "remove one first" in refused.value.message
    ledger.admit(_add(INSTANCE, 12))  # the domain it has: a repeat


def test_two_instances_racing_for_one_domain_one_wins(ledger: Ledger) -> None:
    _provision(ledger)
    _provision_other(ledger)
    adds = {INSTANCE: _add(INSTANCE, 10), OTHER_ID: _add(OTHER_ID, 10)}
    start = threading.Barrier(2)
    results: dict[str, object] = {}

    def race(instance_id: str) -> None:
        start.wait()
        try:
            results[instance_id] = ledger.start(adds[instance_id])
        except (MessageRejected, RaceLostError) as lost:
            results[instance_id] = lost

    threads = [threading.Thread(target=race, args=(i,)) for i in adds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [i for i, result in results.items() if isinstance(result, Started)]
    assert len(winners) == 1, results
    (loser,) = set(adds) - set(winners)
    assert isinstance(results[loser], MessageRejected | RaceLostError), results
    # Decided again, as the consumer retries it: the winner's reservation answers `conflict`.
    with pytest.raises(MessageRejected) as refused:
        ledger.admit(adds[loser])
    assert refused.value.code is RejectionCode.CONFLICT
    assert ledger.domains() == {DOMAIN: winners[0]}
