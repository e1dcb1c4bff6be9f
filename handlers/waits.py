"""What a waiting step waits for, as data, so that waiting need not hold a thread.

A step that waits for a Job to finish, a rollout, or an object to go says so with a
`WaitingFor`: the kind, the object (by name, or every object with some labels), and the state
awaited (a predicate on the typed object, or gone). The same value answers three questions,
so the condition is written once:

- `holds_now(cluster)`: one look through the API (no watch), which the step asks first;
- `block(cluster, window)`: the watch of today's consumer, when the delivery cannot be parked;
- `satisfied(objects, decode)`: asked by the consumer's parking lot (consumers/parking.py) of
  the objects its informer shows, on every event that `concerns` it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from handlers.platform import Cluster
from k8s.apply import Document
from k8s.kinds import CERTIFICATE, DEPLOYMENT, JOB, POD, PVC, Kind

T = TypeVar("T")

WAITED_KINDS: tuple[Kind[Any], ...] = (JOB, DEPLOYMENT, POD, PVC, CERTIFICATE)
"""Every kind a step waits for: what the consumer's informer must watch."""

Decode = Callable[[Kind[Any], Document], Any]
"""Reads the API's JSON of an object as the typed model of its kind."""


@dataclass(frozen=True)
class WaitingFor(Generic[T]):
    """One object of `kind` reaching a state (`holds`) or gone (`holds` None), or, by
    `labels`, no object with those labels left."""

    kind: Kind[T]
    description: str
    """For log lines and metrics: what is awaited, in words."""
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    holds: Callable[[T], bool] | None = None

    @classmethod
    def state(
        cls, kind: Kind[T], name: str, holds: Callable[[T], bool], description: str
    ) -> "WaitingFor[T]":
        """Until the object `name` exists and `holds`."""
        return cls(kind, description, name=name, holds=holds)

    @classmethod
    def gone(cls, kind: Kind[T], name: str, description: str) -> "WaitingFor[T]":
        """Until the object `name` no longer exists."""
        return cls(kind, description, name=name)

    @classmethod
    def none_left(
        cls, kind: Kind[T], labels: Mapping[str, str], description: str
    ) -> "WaitingFor[T]":
        """Until no object of the kind carries all of `labels`."""
        return cls(kind, description, labels=tuple(sorted(labels.items())))

    @property
    def selector(self) -> str:
        """The labels as a label selector."""
        return ",".join(f"{key}={value}" for key, value in self.labels)

    def concerns(self, document: Document) -> bool:
        """Whether a change of this object can end the wait."""
        metadata = document.get("metadata") or {}
        if self.name is not None:
            return bool(metadata.get("name") == self.name)
        labels = metadata.get("labels") or {}
        return all(labels.get(key) == value for key, value in self.labels)

    def satisfied(self, objects: Mapping[str, Document], decode: Decode) -> bool:
        """Whether the wait is over, given every object of the kind (by name) as JSON."""
        if self.name is None:
            return not any(self.concerns(document) for document in objects.values())
        document = objects.get(self.name)
        if self.holds is None:
            return document is None
        return document is not None and self.holds(decode(self.kind, document))

    def holds_now(self, cluster: Cluster) -> bool:
        """One look through the API: whether the wait is already over."""
        if self.name is None:
            return not cluster.objects(self.kind, selector=self.selector)
        found = cluster.get(self.kind, self.name)
        if self.holds is None:
            return found is None
        return found is not None and self.holds(found)

    def block(self, cluster: Cluster, window: float) -> None:
        """Watch for at most `window` seconds until it is over (WaitTimeoutError if not)."""
        if self.name is None:
            cluster.wait_none(self.kind, selector=self.selector, deadline_seconds=window)
        elif self.holds is None:
            cluster.wait_gone(self.kind, self.name, window)
        else:
            cluster.wait_for(self.kind, self.name, self.holds, window)
