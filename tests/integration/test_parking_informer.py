"""Parked waits against the real control plane + kwok: the consumer's informer resumes them
when a Job completes, a Deployment rolls out, its pods are gone, or it is deleted; a wait that
nothing ends is resumed at its `until`. Nothing is faked: kwok runs the pods, the Job and
Deployment controllers do the rest."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from consumers.cluster_events import InformerEvents
from consumers.parking import ParkingLot
from handlers.jobs import finished
from handlers.waits import WaitingFor
from k8s.apply import Kubernetes, rolled_out
from k8s.conditions import job_outcome
from k8s.kinds import DEPLOYMENT, JOB, POD, PVC
from k8s.settings import TenantSettings
from k8s.workload import build_deployment, build_init_job, build_volume
from tests.tenant_specs import tenant_spec

pytestmark = pytest.mark.k8s

SPEC = tenant_spec(cpu_millicores=500, memory_mib=1024, storage_gib=5)
TENANTS = TenantSettings()
LATER = 300.0
"""An `until` no test waits for: a resumption before it came from an event."""
EVENT_WAIT = 120.0


class Resumed:
    """A resume callback: when it was called, and how often."""

    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()


@pytest.fixture
def kube(k8s_api: client.ApiClient, namespace: str) -> Kubernetes:
    return Kubernetes(k8s_api, namespace)


@pytest.fixture
def lot(k8s_api: client.ApiClient, namespace: str) -> Iterator[ParkingLot]:
    """The consumer's lot, fed by its informer over the test's namespace, its timer running."""
    events = InformerEvents(lambda: Kubernetes(k8s_api, namespace), watch_seconds=30)
    lot = ParkingLot(events, capacity=10)
    stop = threading.Event()
    timer = threading.Thread(target=lot.run, args=(stop,), daemon=True)
    timer.start()
    yield lot
    stop.set()
    lot.close()
    events.close()
    timer.join(10)


def _park(lot: ParkingLot, key: str, waiting_for: WaitingFor[Any], until: float) -> Resumed:
    resumed = Resumed()
    assert lot.park(key, waiting_for, until, resumed)
    return resumed


def test_a_wait_for_a_job_is_resumed_when_it_completes(lot: ParkingLot, kube: Kubernetes) -> None:
    name = SPEC.names.init_job
    kube.apply(PVC, build_volume(SPEC, TENANTS, kube.namespace))  # its pod mounts the data
    kube.apply(JOB, build_init_job(SPEC, TENANTS, kube.namespace))
    resumed = _park(lot, "job", finished(name), time.time() + LATER)
    assert resumed.event.wait(EVENT_WAIT), "the Job's completion did not resume the wait"
    job = kube.get(JOB, name)
    assert job is not None
    assert job_outcome(job) == "Complete"
    assert resumed.calls == 1
    assert lot.waiting == 0


def test_a_rollout_then_its_pods_gone_then_the_deployment_gone(
    lot: ParkingLot, kube: Kubernetes
) -> None:
    name = SPEC.names.base
    kube.apply(PVC, build_volume(SPEC, TENANTS, kube.namespace))
    kube.apply(DEPLOYMENT, build_deployment(SPEC, TENANTS, kube.namespace, replicas=1))
    up = WaitingFor.state(DEPLOYMENT, name, rolled_out(1), "one ready pod")
    resumed = _park(lot, "up", up, time.time() + LATER)
    assert resumed.event.wait(EVENT_WAIT), "the rollout did not resume the wait"
    assert up.holds_now(kube)

    # Scaled to zero: the status counts none before the pod has terminated; wait for it too
    # (kwok may have deleted it already: then the lot's view resumes the wait at once).
    kube.scale(name, 0)
    no_pods = WaitingFor.none_left(POD, SPEC.selector(), "no server pod")
    resumed = _park(lot, "down", no_pods, time.time() + LATER)
    assert resumed.event.wait(EVENT_WAIT), "the last pod's deletion did not resume the wait"
    assert no_pods.holds_now(kube)

    kube.delete(DEPLOYMENT, name)
    gone = WaitingFor.gone(DEPLOYMENT, name, "Deployment gone")
    resumed = _park(lot, "gone", gone, time.time() + LATER)
    assert resumed.event.wait(EVENT_WAIT), "the deletion did not resume the wait"
    assert kube.get(DEPLOYMENT, name) is None


def test_a_wait_nothing_ends_is_resumed_at_its_until(lot: ParkingLot, kube: Kubernetes) -> None:
    until = time.time() + 2
    resumed = _park(lot, "never", finished("no-such-job"), until)
    assert resumed.event.wait(EVENT_WAIT), "`until` did not resume the wait"
    assert time.time() >= until  # not an event: nothing happened to that Job
    assert kube.get(JOB, "no-such-job") is None
    assert resumed.calls == 1
