"""Deliveries whose handler waits for the cluster, kept unacknowledged without a thread.

A handler waiting for a Job, a rollout or a deletion returns `Wait`; the decision makes it a
`Park` (consumers/delivery.py) and the runtime parks the delivery here with a `resume` callback
that hands the same delivery to its worker pool again. The lot calls `resume` once: when an event
of the cluster shows the wait is over, or when `until` passes (the handler then looks again and
decides: wait more, continue through the delay queues, or fail at its own deadline). `cancel`,
`cancel_all` and `close` hand deliveries back without resuming them (the runtime nacks them,
requeued), so a delivery is never resumed twice nor after it was given back.

Events come through a port, `ClusterEvents` (consumers/cluster_events.py is the informer behind
it): after each (re)list the complete set of a kind, then each change. The lot keeps the objects
it was shown by kind and name, so a wait parked after its event already came ends at once, and
after a relist every parked wait of the kind is looked at again (an event may have been missed
while the watch was down). A kind is watched from its first wait on. Bounded by `capacity`
(settings `consumer.max_waiting`): beyond it `has_room` says no and the handler waits in its
thread as before.

The instance lock is not held while parked, as for a continuation today; see docs/throughput.md
for how a lock handle would travel with a parked delivery.
"""

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from handlers.waits import WAITED_KINDS, Decode, WaitingFor
from k8s.apply import Document
from k8s.kinds import Kind

log = logging.getLogger(__name__)

Listed = Callable[[list[Document]], None]
"""Receives every object of a kind after each (re)list."""
Changed = Callable[[str, Document], None]
"""Receives each change of a kind: ADDED, MODIFIED or DELETED, and the object."""


WAITED = tuple(waited.name for waited in WAITED_KINDS)
"""The kinds a lot watches by default: every kind a step waits for."""


class ClusterEvents(Protocol):
    """Changes of the tenant namespace's objects, by kind (the informer is the real one)."""

    def subscribe(self, kind: str, listed: Listed, changed: Changed) -> None:
        """From now on, tell `listed` and `changed` about objects of `kind`."""

    def decode(self, kind: Kind[Any], document: Document) -> Any:
        """An object's JSON as the typed model of its kind (what a wait's predicate takes)."""


class Parking(Protocol):
    """What the decision asks of the lot: whether a waiting handler may return Wait."""

    def has_room(self) -> bool:
        """Whether one more delivery may be parked now."""


@dataclass(frozen=True)
class _Parked:
    waiting_for: WaitingFor[Any]
    until: float
    resume: Callable[[], None]


class ParkingLot:
    """Parked deliveries by key (the runtime's delivery tag), resumed once each."""

    def __init__(
        self,
        events: ClusterEvents,
        capacity: int,
        clock: Callable[[], float] = time.time,
        kinds: Iterable[str] = WAITED,
    ) -> None:
        self.capacity = capacity
        self._clock = clock
        self._decode: Decode = events.decode
        self._lock = threading.Condition()
        self._parked: dict[Hashable, _Parked] = {}
        self._events = events
        self._kinds = frozenset(kinds)
        self._subscribed: set[str] = set()
        self._objects: dict[str, dict[str, Document]] = {}
        self._listed: set[str] = set()
        self._closed = False
        self.resumed = 0
        """Resumptions so far (by an event or by `until`)."""
        self.most_waiting = 0
        """The most deliveries parked at one time so far."""

    # -- the runtime's side ----------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether one more delivery may be parked now."""
        with self._lock:
            return not self._closed and len(self._parked) < self.capacity

    @property
    def waiting(self) -> int:
        """Deliveries parked now."""
        with self._lock:
            return len(self._parked)

    def park(
        self,
        key: Hashable,
        waiting_for: WaitingFor[Any],
        until: float,
        resume: Callable[[], None],
    ) -> bool:
        """Keep `key` until `waiting_for` holds or `until` (epoch) passes, then call `resume`
        once. False (nothing kept) when full, closed, or the kind is not watched: the caller
        then goes on without parking."""
        kind = waiting_for.kind.name
        if kind not in self._kinds:
            return False
        self._watch(kind)
        with self._lock:
            if self._closed or len(self._parked) >= self.capacity:
                return False
            if key in self._parked:
                raise ValueError(f"{key!r} is parked already")
            parked = _Parked(waiting_for, until, resume)
            # The event may have come between the handler's look and now.
            over = until <= self._clock() or (
                kind in self._listed and self._over(kind, waiting_for)
            )
            if not over:
                self._parked[key] = parked
                self.most_waiting = max(self.most_waiting, len(self._parked))
                self._lock.notify_all()  # the timer may now have an earlier `until`
        if over:
            self._resume([parked])
        return True

    def cancel(self, key: Hashable) -> bool:
        """Forget `key` without resuming it; False if it was not parked (resumed already)."""
        with self._lock:
            return self._parked.pop(key, None) is not None

    def cancel_all(self) -> list[Hashable]:
        """Forget every parked delivery without resuming any; their keys, to hand back."""
        with self._lock:
            keys = list(self._parked)
            self._parked.clear()
            return keys

    def close(self) -> list[Hashable]:
        """Park nothing more and forget what is parked (to hand back); stops `run`."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        return self.cancel_all()

    # -- time ------------------------------------------------------------------------------

    def expire(self) -> int:
        """Resume every parked delivery whose `until` has passed; how many."""
        now = self._clock()
        with self._lock:
            due = [key for key, parked in self._parked.items() if parked.until <= now]
            fired = [self._parked.pop(key) for key in due]
        self._resume(fired)
        return len(fired)

    def next_due(self) -> float | None:
        """The earliest `until` of what is parked (None: nothing is)."""
        with self._lock:
            return min((parked.until for parked in self._parked.values()), default=None)

    def run(self, stop: threading.Event, longest_pause: float = 1.0) -> None:
        """Resume deliveries as their `until` passes, until `stop` is set or the lot closed."""
        while not stop.is_set():
            self.expire()
            with self._lock:
                if self._closed:
                    return
                due = min((parked.until for parked in self._parked.values()), default=math.inf)
                self._lock.wait(max(0.0, min(due - self._clock(), longest_pause)))

    # -- the cluster's side ----------------------------------------------------------------

    def listed(self, kind: str, items: list[Document]) -> None:
        """The complete set of `kind`: every parked wait of that kind is looked at again."""
        objects = {_name(item): _kept(item) for item in items}
        with self._lock:
            self._objects[kind] = objects
            self._listed.add(kind)
            fired = self._take(kind, None)
        self._resume(fired)

    def changed(self, kind: str, change: str, item: Document) -> None:
        """One change of an object: the waits it concerns are looked at again."""
        with self._lock:
            objects = self._objects.setdefault(kind, {})
            if change == "DELETED":
                objects.pop(_name(item), None)
            else:
                objects[_name(item)] = _kept(item)
            fired = self._take(kind, item)
        self._resume(fired)

    # -- inside ----------------------------------------------------------------------------

    def _watch(self, kind: str) -> None:
        """Subscribe to `kind` on its first wait: an idle consumer, or one whose commands never
        wait, opens no watch (and loads no client for it). Parked before the first list, a wait
        is looked at when that list comes."""
        with self._lock:
            if kind in self._subscribed:
                return
            self._subscribed.add(kind)
        self._events.subscribe(
            kind, functools.partial(self.listed, kind), functools.partial(self.changed, kind)
        )

    def _take(self, kind: str, item: Document | None) -> list[_Parked]:
        """Remove and return the parked waits of `kind` (that `item` concerns) now over."""
        over = [
            key
            for key, parked in self._parked.items()
            if parked.waiting_for.kind.name == kind
            and (item is None or parked.waiting_for.concerns(item))
            and self._over(kind, parked.waiting_for)
        ]
        return [self._parked.pop(key) for key in over]

    def _over(self, kind: str, waiting_for: WaitingFor[Any]) -> bool:
        try:
            return waiting_for.satisfied(self._objects.get(kind, {}), self._decode)
        except Exception:  # an object the predicate cannot read: the handler will look itself
            log.exception("cannot evaluate a wait", extra={"waiting_for": waiting_for.description})
            return True

    def _resume(self, fired: list[_Parked]) -> None:
        with self._lock:
            self.resumed += len(fired)
        for parked in fired:
            try:
                parked.resume()
            except Exception:  # the runtime's problem (its connection went away): logged
                log.exception(
                    "cannot resume a parked delivery",
                    extra={"waiting_for": parked.waiting_for.description},
                )


def _name(item: Document) -> str:
    return str((item.get("metadata") or {}).get("name", ""))


def _kept(item: Document) -> Document:
    """The object without what no wait reads and takes most room (managedFields)."""
    metadata = item.get("metadata") or {}
    if "managedFields" not in metadata:
        return item
    return {**item, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
