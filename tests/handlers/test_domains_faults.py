"""domain.add and domain.remove killed at every step (the kill-at-every-step harness of
tests/handlers/harness.py): each resumes where it stopped and answers once; an add the issuer
refuses, killed at every step of its undoing too, leaves no Certificate or Secret behind."""

import pytest

from tests.handlers.harness import Lifecycle, event_kind, run_steps
from tests.handlers.test_domains import (
    certificates,
    nothing_left,
    pointed,
    refuse,
    running,
    tls_secrets,
)

pytestmark = [pytest.mark.fault, pytest.mark.k8s, pytest.mark.postgres, pytest.mark.dns]

ADD = ["dns", "certificate", "issued", "ingress", "record"]
REMOVE = ["ingress", "certificate", "record"]
REFUSED = ["dns", "certificate", "undo-certificate"]
"""An add the issuer refuses: `issued` fails (it records nothing), the undo runs, no `record`."""


def test_add_and_remove_killed_at_any_step_answer_once_and_leave_no_orphan(
    driver: Lifecycle,
) -> None:
    instance_id = running(driver)
    for crash in range(len(ADD)):
        domain = pointed()
        data = {"instance_id": instance_id, "domain": domain}
        added = run_steps(driver, "domain.add", data, ADD, crash)
        assert event_kind(added) == "domain.added", (ADD[crash], added)
        assert len(certificates(driver, instance_id)) == 1, ADD[crash]
        assert len(tls_secrets(driver, instance_id)) == 1, ADD[crash]
        removed = run_steps(driver, "domain.remove", data, REMOVE, min(crash, len(REMOVE) - 1))
        assert event_kind(removed) == "domain.removed", (REMOVE[crash % len(REMOVE)], removed)
        nothing_left(driver, instance_id, domain)


def test_a_refused_add_killed_at_any_step_of_its_undoing_leaves_nothing(
    driver: Lifecycle,
) -> None:
    instance_id = running(driver)
    for crash in range(len(REFUSED)):
        domain = pointed()
        refuse(domain)
        data = {"instance_id": instance_id, "domain": domain}
        event = run_steps(driver, "domain.add", data, REFUSED, crash)
        assert event_kind(event) == "command.failed", (REFUSED[crash], event)
        assert event["data"]["error"]["code"] == "certificate_failed"
        assert event["data"]["rolled_back"] is True
        nothing_left(driver, instance_id, domain)
