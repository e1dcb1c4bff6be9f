"""List, then watch, one kind of object by label, forever: the watcher's view of the cluster.

Each cycle lists (handing over the complete set, so anything missed while disconnected is
corrected) and then watches from the list's resourceVersion with bookmarks, so a reconnect
resumes where it stopped. A 410 (that version was compacted away) lists again; a broken stream
or an API server that does not answer is retried with backoff and jitter (`backoff`, by default
messages/backoff.py's RECONNECT), without end, until `stop` is set. Objects are handed over as
the API's JSON (dicts).
"""

import functools
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions
from kubernetes import watch
from kubernetes.client import ApiException

from k8s.apply import Document, Kubernetes
from k8s.kinds import Kind
from messages.backoff import RECONNECT, Backoff
from messages.errors import PermanentError, RetryableError
from telemetry.metrics import METRICS

log = logging.getLogger(__name__)

Listed = Callable[[list[Document]], None]
"""Receives the complete set after each list."""
Changed = Callable[[str, Document], None]
"""Receives each watch event: ADDED, MODIFIED or DELETED, and the object."""


@dataclass
class Informer:
    """Keeps one kind of labelled object of the cluster's namespace in view."""

    cluster: Kubernetes
    kind: Kind[object]
    label_selector: str
    watch_seconds: int = 300
    """Length of one watch request; the server ends it and the informer resumes."""
    backoff: Backoff = RECONNECT
    """Pauses after failures in a row; a watch that ends normally starts it over."""
    resource_version: str | None = None
    """Where the first watch resumes (None: list first); a version long compacted away makes
    the API answer 410, which is how tests check that nothing is lost across one."""
    relists: int = 0
    """How many times it listed (each relist after the first follows a 410 or an outage)."""

    def run(self, listed: Listed, changed: Changed, stop: threading.Event) -> None:
        """List and watch until `stop` is set."""
        failures = 0  # in a row: the attempt of `backoff` the next pause waits for
        rng = random.Random()  # noqa: S311 - jitter
        while not stop.is_set():
            try:
                if self.resource_version is None:
                    self._list(listed)
                self._watch(changed, stop)
            except ApiException as error:
                if error.status == 410:
                    log.info("watch expired; listing again", extra={"kind": self.kind.name})
                    self.resource_version = None
                    continue
                why = f"{error.status} {error.reason}"
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as error:
                why = f"{type(error).__name__}: {error}"
            except (RetryableError, PermanentError) as error:  # a failed list, classified
                why = f"{type(error).__name__}: {error}"
            except Exception as error:  # anything else (an object the client cannot decode):
                # the thread must not die and leave a stale picture; list afresh after a pause.
                log.exception(
                    "watch failed unexpectedly; listing again", extra={"kind": self.kind.name}
                )
                self.resource_version = None
                why = f"{type(error).__name__}: {error}"
            else:
                failures = 0
                continue
            wait = self.backoff.delay(failures, rng)
            failures += 1
            log.warning(
                "cannot watch; retrying",
                extra={"kind": self.kind.name, "error": why, "in_seconds": round(wait, 3)},
            )
            stop.wait(wait)

    def _list(self, listed: Listed) -> None:
        answer = self.cluster.list_raw(self.kind, selector=self.label_selector)
        self.relists += 1
        self.resource_version = answer["metadata"]["resourceVersion"]
        listed(list(answer["items"]))

    def _watch(self, changed: Changed, stop: threading.Event) -> None:
        method = self.cluster.list_method(self.kind)
        opened = False

        @functools.wraps(method)  # the client reads the item type from the method's docstring
        def open_watch(*args: Any, **kwargs: Any) -> Any:
            # Counted once the API server has answered the request (a watch stays open for
            # minutes, so counting it when it ends would hide it from anyone looking meanwhile).
            nonlocal opened
            response = method(*args, **kwargs)
            opened = True
            self.cluster.requests[("watch", self.kind.name)] += 1
            METRICS.kubernetes_request("watch", self.kind.name, 200, None)
            return response

        stream = watch.Watch().stream(
            open_watch,
            self.cluster.namespace,
            label_selector=self.label_selector,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_seconds,
            _request_timeout=self.watch_seconds + 10,
        )
        try:
            for event in stream:
                raw = event.get("raw_object") or {}
                version = raw.get("metadata", {}).get("resourceVersion")
                if event["type"] == "ERROR":
                    code = int(raw.get("code", 0))
                    raise ApiException(status=code, reason=str(raw.get("message", "")))
                if version:
                    self.resource_version = version
                if event["type"] != "BOOKMARK":
                    changed(event["type"], raw)
                if stop.is_set():
                    return
        except ApiException as error:
            if not opened:  # refused (403, 410 ...): the request's answer
                METRICS.kubernetes_request("watch", self.kind.name, int(error.status or 0), None)
            raise
        except Exception as error:
            if not opened:
                METRICS.kubernetes_request("watch", self.kind.name, None, type(error).__name__)
            raise
