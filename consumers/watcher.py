"""`instance-service watch`: follows the tenants' server Deployments and pods and turns what it
sees into `odoo.instance.status.changed.v1` (running <-> degraded), published through the outbox;
and, being always on while consumers scale to zero, runs the watchdog of operations whose
continuation was lost (handlers/watchdog.py): it publishes their commands again itself.

    informer threads (Deployments, Pods: list + watch, k8s/informer.py; Certificates for the
        expiry metric, consumers/certificates.py)
        -> a queue -> this loop, the only thread that decides and writes:
           cache per instance, evaluate what changed or fell due (handlers/observation.py),
           record the change and its event in one transaction (Ledger.record_observation),
           publish the outbox (its own AMQP connection, reconnected with backoff)
        -> every `operations.sweep_seconds`: the watchdog, on the same connection

Level-triggered: each decision is taken from the whole current picture, never from one event,
so a relist after a 410 or an outage, or a restart of the watcher, loses no transition and
repeats none (the store's compare-and-set refuses a change already made). Run one replica;
a second would only find its changes refused.
"""

import contextlib
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import BasicProperties

from consumers.certificates import CertificateExpiry
from consumers.connection import BrokerUnavailableError, open_connection
from consumers.freshness import FleetFreshness
from consumers.health import Health
from consumers.relay import OutboxRelay
from consumers.settings import AmqpSettings, WatcherSettings
from handlers.observation import decide, due, observe
from handlers.watchdog import CommandNotPublishedError, Watchdog
from k8s.apply import Kubernetes
from k8s.certificates import COMPONENT as DOMAIN_COMPONENT
from k8s.informer import Informer
from k8s.kinds import CERTIFICATE, kind_named
from k8s.spec import INSTANCE_LABEL, MANAGED_BY
from messages.amqp import OutgoingMessage
from messages.backoff import RECONNECT
from messages.events import StatusChangedData, StatusChangedEvent
from messages.serialization import EVENTS_EXCHANGE
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.locks import InstanceBusyError
from telemetry.metrics import METRICS

log = logging.getLogger(__name__)

SERVER_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/component=server"
CERTIFICATE_SELECTOR = (
    f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/component={DOMAIN_COMPONENT}"
)
WATCHED = ("Deployment", "Pod")
OWNED = frozenset({InstanceStatus.RUNNING, InstanceStatus.DEGRADED})


@dataclass
class _Picture:
    """What the cluster shows of the instances: Deployments and pods by instance id."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def replace(self, kind: str, items: list[dict[str, Any]]) -> set[str]:
        """A complete list of one kind; returns the instances it may have changed."""
        before = set(self.deployments) if kind == "Deployment" else set(self.pods)
        if kind == "Deployment":
            self.deployments = {_owner(item): item for item in items if _owner(item)}
            return before | set(self.deployments)
        self.pods = {}
        for item in items:
            if _owner(item):
                self.pods.setdefault(_owner(item), {})[item["metadata"]["name"]] = item
        return before | set(self.pods)

    def change(self, kind: str, kind_of_change: str, item: dict[str, Any]) -> str:
        """One watch event; returns its instance ("" when it names none)."""
        owner = _owner(item)
        if not owner:
            return ""
        if kind == "Deployment":
            if kind_of_change == "DELETED":
                self.deployments.pop(owner, None)
            else:
                self.deployments[owner] = item
            return owner
        pods = self.pods.setdefault(owner, {})
        if kind_of_change == "DELETED":
            pods.pop(item["metadata"]["name"], None)
        else:
            pods[item["metadata"]["name"]] = item
        return owner


def _owner(item: dict[str, Any]) -> str:
    return str(item.get("metadata", {}).get("labels", {}).get(INSTANCE_LABEL, ""))


class Watcher:
    """The watch process: informers, decisions, outbox publishing."""

    def __init__(
        self,
        cluster: Callable[[], Kubernetes],
        ledger: Ledger,
        relay: OutboxRelay,
        amqp: AmqpSettings,
        settings: WatcherSettings,
        health: Health | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.ledger = ledger
        self.watchdog = watchdog
        self.relay = relay
        self.amqp = amqp
        self.settings = settings
        self.health = health or Health()
        self.stopping = threading.Event()
        self.informers = {
            kind: Informer(cluster(), kind_named(kind), SERVER_SELECTOR, settings.watch_seconds)
            for kind in WATCHED
        }
        self.certificates = CertificateExpiry()
        """The customer domains' Certificates, for the expiry metric (settings may turn off)."""
        self._certificate_informer = (
            Informer(cluster(), CERTIFICATE, CERTIFICATE_SELECTOR, settings.watch_seconds)
            if settings.watch_certificates
            else None
        )
        self.transitions = 0
        """Status changes recorded by this process."""
        self.heartbeat: float | None = None
        """Unix time of the last turn with every informer alive (the heartbeat gauge)."""
        self.freshness = FleetFreshness(ledger)
        self._changes: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._picture = _Picture()
        self._due: dict[str, datetime] = {}
        self._unhealthy_since: dict[str, datetime] = {}
        self._next_resync = 0.0
        self._listed: set[str] = set()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._next_connect = 0.0
        self._threads: list[threading.Thread] = []
        self._connect_failures = 0
        """Connects in a row that failed: the attempt of the reconnect backoff."""
        self._rng = random.Random()  # noqa: S311 - jitter
        self._next_sweep = 0.0

    # -- threads -------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until `stopping` is set."""
        threads = [
            threading.Thread(
                target=informer.run,
                args=(
                    lambda items, kind=kind: self._changes.put(("list", kind, items)),
                    lambda change, item, kind=kind: self._changes.put((change, kind, item)),
                    self.stopping,
                ),
                name=f"watch-{kind.lower()}",
                daemon=True,
            )
            for kind, informer in self.informers.items()
        ]
        if self._certificate_informer is not None:
            threads.append(
                threading.Thread(
                    target=self._certificate_informer.run,
                    args=(self.certificates.listed, self.certificates.changed, self.stopping),
                    name="watch-certificate",
                    daemon=True,
                )
            )
            METRICS.watch_certificates(self.certificates.remaining)
        self._threads = threads
        for thread in threads:
            thread.start()
        # The watcher is the one process always on: it reports what the alert rules need even
        # while every consumer is scaled to zero (deploy/monitoring/).
        METRICS.watch_heartbeat(lambda: self.heartbeat)
        METRICS.watch_fleet(self.freshness)
        METRICS.watch_outbox(self.relay)
        try:
            while not self.stopping.is_set():
                self._turn()
        finally:
            METRICS.watch_heartbeat(None)
            METRICS.watch_fleet(None)
            METRICS.unwatch_outbox(self.relay)
            self._publish()  # what was decided last leaves with this process if it can
            self._disconnect()

    def _turn(self) -> None:
        dirty: set[str] = set()
        try:
            item = self._changes.get(timeout=self.settings.tick_seconds)
        except queue.Empty:
            item = None
        while item is not None:
            dirty |= self._apply(*item)
            try:
                item = self._changes.get_nowait()
            except queue.Empty:
                item = None
        now = datetime.now(UTC)
        dirty |= {instance for instance, when in self._due.items() if when <= now}
        if time.monotonic() >= self._next_resync and self._listed == set(WATCHED):
            # Every serving instance now and then, whatever happened: an operation that ended
            # without a pod event (a backup, a resize) may have left one to decide about.
            self._next_resync = time.monotonic() + self.settings.resync_seconds
            dirty |= self._serving()
        for instance_id in sorted(dirty):
            try:
                self._evaluate(instance_id, now)
            except Exception:  # e.g. the store not answering (logged): keep watching
                log.exception("cannot evaluate; trying again", extra={"instance_id": instance_id})
                self._due[instance_id] = now + timedelta(
                    seconds=self.settings.degraded_after_seconds
                )
        self.health.set_ready(self._listed == set(WATCHED))
        if all(thread.is_alive() for thread in self._threads):
            self.health.beat()  # a dead informer stalls /livez: the kubelet restarts us
            self.heartbeat = time.time()
        self._sweep()
        self._publish()

    def _apply(self, change: str, kind: str, item: Any) -> set[str]:
        if change == "list":
            self._listed.add(kind)
            touched = self._picture.replace(kind, item)
            # After a (re)list, every instance that should serve is looked at again, so one
            # whose Deployment vanished while nobody watched is noticed too.
            return touched | self._serving()
        owner = self._picture.change(kind, change, item)
        return {owner} if owner else set()

    def _serving(self) -> set[str]:
        try:
            return {i.id for i in self.ledger.instances() if i.status in OWNED}
        except Exception:  # the store not answering (logged): the next resync tries again
            log.exception("cannot read the instances")
            return set()

    # -- decisions -----------------------------------------------------------------------

    def _evaluate(self, instance_id: str, now: datetime) -> None:
        self._due.pop(instance_id, None)
        instance = self.ledger.instance(instance_id)
        if instance is None or instance.status not in OWNED:
            self._unhealthy_since.pop(instance_id, None)
            return
        observed = observe(
            self._picture.deployments.get(instance_id),
            list(self._picture.pods.get(instance_id, {}).values()),
        )
        if observed.healthy:
            self._unhealthy_since.pop(instance_id, None)
        else:
            # The objects may not say since when (a Deployment gone, no pod): from first sight.
            first = self._unhealthy_since.setdefault(instance_id, now)
            observed = replace(observed, since=observed.since or first)
        transition = decide(instance.status, observed, now, self.settings.degraded_after_seconds)
        if transition is None:
            when = due(observed, self.settings.degraded_after_seconds)
            if when is not None and instance.status is InstanceStatus.RUNNING:
                self._due[instance_id] = when
            return
        data = StatusChangedData(
            instance_id=instance_id,
            **{"from": transition.from_.value},
            to=transition.to.value,
            reason=transition.reason[:500],
        )
        event = StatusChangedEvent.observed(data, correlationid=instance_id)
        try:
            recorded = self.ledger.record_observation(
                instance_id, transition.from_, event, transition.to
            )
        except InstanceBusyError:
            # A command holds the instance: look again after it (or on the next tick).
            self._due[instance_id] = now + timedelta(seconds=self.settings.tick_seconds)
            return
        if recorded:
            self.transitions += 1
            log.info(
                "status changed",
                extra={
                    "instance_id": instance_id,
                    "from": transition.from_.value,
                    "to": transition.to.value,
                    "reason": transition.reason,
                },
            )

    # -- the watchdog --------------------------------------------------------------------

    def _sweep(self) -> None:
        """Resume or fail the operations past their deadline, every `sweep_seconds`."""
        if self.watchdog is None or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.watchdog.settings.sweep_seconds
        channel = self._ensure_channel()
        publish = functools.partial(_publish_command, channel) if channel is not None else None
        try:
            done = self.watchdog.sweep(publish)
        except Exception:  # e.g. the store not answering (logged): the next sweep tries again
            log.exception("cannot look for overdue operations; trying again")
            return
        finally:
            if channel is not None and not channel.is_open:
                self._disconnect()
        if done.resumed or done.timed_out or done.unpublished:
            log.info(
                "overdue operations",
                extra={
                    "resumed": done.resumed,
                    "timed_out": done.timed_out,
                    "unpublished": done.unpublished,
                    "busy": done.busy,
                },
            )

    # -- the outbox ----------------------------------------------------------------------

    def _publish(self) -> None:
        channel = self._ensure_channel()
        if channel is None:
            return
        try:
            self._connection_events()
            self.relay.publish_pending(channel)
        except pika.exceptions.AMQPError as error:
            log.warning("broker connection lost", extra={"error": repr(error)})
            self._disconnect()

    def _connection_events(self) -> None:
        if self._connection is not None:
            self._connection.process_data_events(time_limit=0)

    def _ensure_channel(self) -> BlockingChannel | None:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if time.monotonic() < self._next_connect:
            return None
        try:
            self._connection = open_connection(self.amqp)
            channel = self._connection.channel()
            channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
            channel.confirm_delivery()
        except (BrokerUnavailableError, pika.exceptions.AMQPError) as error:
            log.warning(
                "broker unavailable; events wait in the outbox", extra={"error": str(error)}
            )
            self._disconnect()
            wait = RECONNECT.delay(self._connect_failures, self._rng)
            self._next_connect = time.monotonic() + wait
            self._connect_failures += 1
            return None
        self._connect_failures = 0
        self._channel = channel
        return channel

    def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()


def _publish_command(channel: BlockingChannel, message: OutgoingMessage) -> None:
    """Publish a command as its sender did, and wait for the broker's confirm.

    To `instance.commands` with its type as routing key and none of the service's own
    `x-instance-service-*` headers: it arrives as a command first sent, and the consumer
    resumes its operation from the recorded step.
    """
    properties = message.properties
    try:
        channel.basic_publish(
            message.exchange,
            message.routing_key,
            message.body,
            BasicProperties(
                content_type=properties.content_type,
                delivery_mode=properties.delivery_mode,
                message_id=properties.message_id,
                headers=dict(properties.headers),
            ),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError:
        # The broker has it, and no queue takes its type: counted as a resume all the same,
        # so the operation is failed once its resumes are spent rather than retried for ever.
        log.warning(
            "resumed command not routed to any queue",
            extra={"command_id": properties.message_id, "type": message.routing_key},
        )
    except pika.exceptions.AMQPError as error:
        raise CommandNotPublishedError(f"{type(error).__name__}: {error}") from error
