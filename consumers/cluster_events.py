"""The consumer's one view of the cluster's changes: an informer per kind waited for.

`InformerEvents` is the real `ClusterEvents` (consumers/parking.py): for each kind subscribed
to, one thread runs k8s/informer.py's list + watch over the tenant namespace, restricted to the
service's own objects (`app.kubernetes.io/managed-by`), and hands each (re)list and each change
to the subscribers. Reconnects, backoff and 410 Gone are the informer's; a relist hands over the
complete set, so nothing missed while disconnected is lost. One per process, shared by every
parked delivery: a wait costs no request of its own.
"""

import threading
from collections.abc import Callable
from typing import Any

from consumers.parking import Changed, Listed
from k8s.apply import Document, Kubernetes
from k8s.informer import Informer
from k8s.kinds import Kind, kind_named
from k8s.spec import MANAGED_BY

SERVICE_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
"""Every object the service makes carries it: Jobs, Deployments, their pods, volumes."""


class InformerEvents:
    """List + watch of the kinds subscribed to, each in a daemon thread, until `close`."""

    def __init__(
        self,
        cluster: Callable[[], Kubernetes],
        selector: str = SERVICE_SELECTOR,
        watch_seconds: int = 300,
    ) -> None:
        self._cluster = cluster
        self._decoder = cluster()
        self.selector = selector
        self.watch_seconds = watch_seconds
        self.stopping = threading.Event()
        self.informers: dict[str, Informer] = {}
        self._subscribers: dict[str, list[tuple[Listed, Changed]]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def subscribe(self, kind: str, listed: Listed, changed: Changed) -> None:
        """Tell `listed` and `changed` about `kind` (its informer starts on first subscription)."""
        with self._lock:
            self._subscribers.setdefault(kind, []).append((listed, changed))
            if kind in self.informers:
                return
            informer = Informer(
                self._cluster(), kind_named(kind), self.selector, self.watch_seconds
            )
            self.informers[kind] = informer
        thread = threading.Thread(
            target=informer.run,
            args=(
                lambda items: self._listed(kind, items),
                lambda change, item: self._changed(kind, change, item),
                self.stopping,
            ),
            name=f"events-{kind.lower()}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def decode(self, kind: Kind[Any], document: Document) -> Any:
        """An object's JSON as its kind's typed model."""
        return self._decoder.decode(kind, document)

    def alive(self) -> bool:
        """Every informer thread still runs (for the liveness probe)."""
        return all(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        """Stop watching (a watch in progress ends with its request)."""
        self.stopping.set()

    def _listed(self, kind: str, items: list[Document]) -> None:
        for listed, _changed in self._subscribers.get(kind, ()):
            listed(items)

    def _changed(self, kind: str, change: str, item: Document) -> None:
        for _listed, changed in self._subscribers.get(kind, ()):
            changed(change, item)
