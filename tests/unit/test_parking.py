"""The parking lot: a parked delivery is resumed once, by the event it waits for or by its
`until`, and never after it was handed back. Events come from a fake of our own port
(`ClusterEvents`); objects are read as the typed client reads them (k8s.apply.Kubernetes.decode,
no request made)."""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from consumers.parking import Changed, Listed, ParkingLot
from handlers.jobs import finished
from handlers.waits import WaitingFor
from k8s.apply import Document, Kubernetes, rolled_out
from k8s.kinds import DEPLOYMENT, JOB, POD, SECRET, Kind

LABELS = {"app.kubernetes.io/instance": "odoo-1", "app.kubernetes.io/component": "server"}


class FakeEvents:
    """Our ClusterEvents port: the test hands over lists and changes by hand; a subscriber is
    given the current set at once, as an informer's first list would."""

    def __init__(self) -> None:
        self.subscribers: dict[str, tuple[Listed, Changed]] = {}
        self.objects: dict[str, dict[str, Document]] = {}
        self.lists_on_subscribe = True
        self._decoder = Kubernetes(client.ApiClient(), "tenants")

    def subscribe(self, kind: str, listed: Listed, changed: Changed) -> None:
        self.subscribers[kind] = (listed, changed)
        if self.lists_on_subscribe:
            listed(list(self.objects.get(kind, {}).values()))

    def decode(self, kind: Kind[Any], document: Document) -> Any:
        return self._decoder.decode(kind, document)

    def list(self, kind: str, *items: Document) -> None:
        self.objects[kind] = {item["metadata"]["name"]: item for item in items}
        if kind in self.subscribers:
            self.subscribers[kind][0](list(items))

    def change(self, kind: str, change: str, item: Document) -> None:
        objects = self.objects.setdefault(kind, {})
        if change == "DELETED":
            objects.pop(item["metadata"]["name"], None)
        else:
            objects[item["metadata"]["name"]] = item
        if kind in self.subscribers:
            self.subscribers[kind][1](change, item)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Resumes:
    """Resume callbacks that count how often each key was resumed."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.happened = threading.Event()

    def of(self, key: str) -> Callable[[], None]:
        def resume() -> None:
            self.counts[key] = self.counts.get(key, 0) + 1
            self.happened.set()

        return resume


def job(name: str, condition: str | None = None) -> Document:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def deployment(name: str, ready: int, generation: int = 2) -> Document:
    counts = dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas"), ready)
    return {
        "metadata": {"name": name, "generation": generation},
        "spec": {"replicas": 1, "selector": {"matchLabels": LABELS}, "template": {}},
        "status": {"observedGeneration": 2, "availableReplicas": ready, **counts},
    }


def pod(name: str, labels: dict[str, str] = LABELS) -> Document:
    return {"metadata": {"name": name, "labels": labels}}


@pytest.fixture
def events() -> FakeEvents:
    return FakeEvents()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lot(events: FakeEvents, clock: Clock) -> ParkingLot:
    return ParkingLot(events, capacity=3, clock=clock)


def test_the_lot_watches_a_kind_from_its_first_wait_on(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    assert events.subscribers == {}  # an idle consumer opens no watch
    resumes = Resumes()
    assert lot.park("t1", finished("init-1"), clock.now + 60, resumes.of("t1"))
    assert set(events.subscribers) == {"Job"}
    wait = WaitingFor.state(DEPLOYMENT, "odoo-1", rolled_out(1), "rolled out")
    assert lot.park("t2", wait, clock.now + 60, resumes.of("t2"))
    assert lot.park("t3", finished("init-2"), clock.now + 60, resumes.of("t3"))
    assert set(events.subscribers) == {"Job", "Deployment"}
    assert lot.waiting == 3


def test_a_job_wait_is_resumed_once_by_the_event_that_finishes_it(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    resumes = Resumes()
    assert lot.park("t1", finished("init-1"), clock.now + 60, resumes.of("t1"))
    events.change("Job", "ADDED", job("init-1"))
    events.change("Job", "MODIFIED", job("other", "Complete"))
    assert resumes.counts == {}
    events.change("Job", "MODIFIED", job("init-1", "Complete"))
    assert resumes.counts == {"t1": 1}
    events.change("Job", "MODIFIED", job("init-1", "Complete"))
    clock.now += 120
    assert lot.expire() == 0
    assert resumes.counts == {"t1": 1}
    assert lot.waiting == 0


def test_a_rollout_wait_holds_only_when_the_deployment_is_rolled_out(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    resumes = Resumes()
    wait = WaitingFor.state(DEPLOYMENT, "odoo-1", rolled_out(1), "rolled out")
    assert lot.park("t1", wait, clock.now + 60, resumes.of("t1"))
    events.change("Deployment", "MODIFIED", deployment("odoo-1", ready=0))
    events.change("Deployment", "MODIFIED", deployment("odoo-1", ready=1, generation=3))
    assert resumes.counts == {}  # the controller has not seen the new template yet
    events.change("Deployment", "MODIFIED", deployment("odoo-1", ready=1))
    assert resumes.counts == {"t1": 1}


def test_a_gone_wait_is_resumed_by_the_deletion(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    events.change("Job", "ADDED", job("old"))
    resumes = Resumes()
    assert lot.park("t1", WaitingFor.gone(JOB, "old", "old gone"), clock.now + 60, resumes.of("t1"))
    events.change("Job", "MODIFIED", job("old"))
    assert resumes.counts == {}
    events.change("Job", "DELETED", job("old"))
    assert resumes.counts == {"t1": 1}


def test_a_none_left_wait_ends_with_the_last_matching_pod(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    for name in ("odoo-1-a", "odoo-1-b"):
        events.change("Pod", "ADDED", pod(name))
    events.change("Pod", "ADDED", pod("odoo-2-a", {**LABELS, "app.kubernetes.io/instance": "x"}))
    resumes = Resumes()
    wait = WaitingFor.none_left(POD, LABELS, "no pod")
    assert lot.park("t1", wait, clock.now + 60, resumes.of("t1"))
    events.change("Pod", "DELETED", pod("odoo-1-a"))
    assert resumes.counts == {}
    events.change("Pod", "DELETED", pod("odoo-1-b"))
    assert resumes.counts == {"t1": 1}  # another instance's pod does not count


def test_a_wait_parked_after_its_event_came_is_resumed_at_once(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    events.change("Job", "MODIFIED", job("init-1", "Failed"))
    resumes = Resumes()
    assert lot.park("t1", finished("init-1"), clock.now + 60, resumes.of("t1"))
    assert resumes.counts == {"t1": 1}
    assert lot.waiting == 0


def test_a_wait_parked_before_the_first_list_is_decided_by_that_list(
    events: FakeEvents, clock: Clock
) -> None:
    events.lists_on_subscribe = False  # the informer's first list is still on its way
    lot = ParkingLot(events, capacity=3, clock=clock)
    resumes = Resumes()
    # Nothing is known of Jobs yet: "gone" cannot be told from "not seen".
    assert lot.park("t1", WaitingFor.gone(JOB, "old", "old gone"), clock.now + 60, resumes.of("t1"))
    assert resumes.counts == {}
    events.list("Job", job("unrelated"))
    assert resumes.counts == {"t1": 1}


def test_a_relist_looks_again_at_every_parked_wait(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    events.change("Job", "ADDED", job("old"))
    events.change("Job", "ADDED", job("init-1"))
    resumes = Resumes()
    lot.park("gone", WaitingFor.gone(JOB, "old", "old gone"), clock.now + 60, resumes.of("gone"))
    lot.park("done", finished("init-1"), clock.now + 60, resumes.of("done"))
    lot.park("still", finished("init-2"), clock.now + 60, resumes.of("still"))
    # The watch was down while "old" went and "init-1" completed: the relist shows both.
    events.list("Job", job("init-1", "Complete"), job("init-2"))
    assert resumes.counts == {"gone": 1, "done": 1}
    assert lot.waiting == 1


def test_until_resumes_a_wait_nothing_ended(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    resumes = Resumes()
    lot.park("t1", finished("init-1"), clock.now + 30, resumes.of("t1"))
    lot.park("t2", finished("init-2"), clock.now + 90, resumes.of("t2"))
    assert lot.next_due() == clock.now + 30
    assert lot.expire() == 0
    clock.now += 30
    assert lot.expire() == 1
    assert resumes.counts == {"t1": 1}
    events.change("Job", "MODIFIED", job("init-1", "Complete"))  # too late: resumed already
    assert resumes.counts == {"t1": 1}
    assert lot.next_due() == clock.now + 60


def test_a_wait_whose_until_has_passed_is_resumed_when_parked(
    lot: ParkingLot, clock: Clock
) -> None:
    resumes = Resumes()
    assert lot.park("t1", finished("init-1"), clock.now, resumes.of("t1"))
    assert resumes.counts == {"t1": 1}


def test_the_lot_is_bounded_and_refuses_what_it_cannot_watch(lot: ParkingLot, clock: Clock) -> None:
    resumes = Resumes()
    for key in ("t1", "t2", "t3"):
        assert lot.has_room()
        assert lot.park(key, finished(key), clock.now + 60, resumes.of(key))
    assert not lot.has_room()
    assert not lot.park("t4", finished("t4"), clock.now + 60, resumes.of("t4"))
    assert lot.waiting == lot.most_waiting == 3
    clock.now += 60
    lot.expire()
    assert lot.has_room()
    unwatched = WaitingFor.gone(SECRET, "s", "secret gone")
    assert not lot.park("t5", unwatched, clock.now + 60, resumes.of("t5"))


def test_what_is_handed_back_is_never_resumed(
    events: FakeEvents, lot: ParkingLot, clock: Clock
) -> None:
    resumes = Resumes()
    lot.park("t1", finished("init-1"), clock.now + 60, resumes.of("t1"))
    lot.park("t2", finished("init-2"), clock.now + 60, resumes.of("t2"))
    lot.park("t3", finished("init-3"), clock.now + 60, resumes.of("t3"))
    assert lot.cancel("t1")
    assert not lot.cancel("t1")
    assert sorted(map(str, lot.cancel_all())) == ["t2", "t3"]
    lot.park("t4", finished("init-4"), clock.now + 60, resumes.of("t4"))
    assert lot.close() == ["t4"]
    for name in ("init-1", "init-2", "init-3", "init-4"):
        events.change("Job", "MODIFIED", job(name, "Complete"))
    clock.now += 120
    lot.expire()
    assert resumes.counts == {}
    assert not lot.has_room()
    assert not lot.park("t5", finished("init-5"), clock.now + 60, resumes.of("t5"))


def test_parking_a_key_twice_is_a_bug(lot: ParkingLot, clock: Clock) -> None:
    lot.park("t1", finished("init-1"), clock.now + 60, Resumes().of("t1"))
    with pytest.raises(ValueError, match="parked already"):
        lot.park("t1", finished("init-1"), clock.now + 60, Resumes().of("t1"))


def test_the_timer_thread_resumes_at_until_and_ends_when_the_lot_closes(
    events: FakeEvents,
) -> None:
    lot = ParkingLot(events, capacity=3)  # the real clock
    resumes, stop = Resumes(), threading.Event()
    timer = threading.Thread(target=lot.run, args=(stop,), daemon=True)
    timer.start()
    lot.park("t1", finished("init-1"), time.time() + 0.2, resumes.of("t1"))
    assert resumes.happened.wait(10)
    assert resumes.counts == {"t1": 1}
    lot.close()
    timer.join(10)
    assert not timer.is_alive()
