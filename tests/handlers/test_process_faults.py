"""Faults a consumer process meets, with the real handlers on the real stack: kill -9 at random
moments during 100+ mixed commands, RabbitMQ restarted mid-stream, PostgreSQL (the service's
state and the tenants' databases) restarted mid-stream. After each: every command has exactly
one terminal event id, in the store as on the bus; the side effects exist once (roles,
databases, objects, backups); `reconcile --dry-run` finds nothing to repair and no orphan.

The commands go in rounds: one command per instance per round, the next round when every
command of this one has its event, so each instance sees its commands in order while a dozen
run at once. Each test prints its counts. `FAULT_SCALE` multiplies the instances; `FAULT_SEED`
replays the kill moments of a run.
"""

import functools
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from devstack import credentials
from devstack.layout import default_layout
from devstack.postgres import Postgres
from devstack.rabbitmq import RabbitMQ
from devstack.seaweedfs import backup_settings
from k8s.spec import INSTANCE_LABEL
from messages.publishing import build_command
from objectstore.backups import ObjectBackups
from objectstore.client import s3_client
from store.database import create_engine
from store.models import Backup, InboxEntry
from store.settings import StoreSettings
from tests import stack
from tests.consumers.harness import Observer, publish
from tests.handlers.checks import names_of
from tests.handlers.consume_process import ConsumeProcess
from tests.handlers.harness import FOLLOWING, event_kind, new_instance, provision_data

pytestmark = [pytest.mark.fault, pytest.mark.k8s, pytest.mark.postgres, pytest.mark.rabbitmq]

T = "odoo.instance."
SCALE = int(os.environ.get("FAULT_SCALE", "1"))
FAILURES = {"command.failed", "command.rejected"}
LIFE_SECONDS = (1.0, 4.0)
LONG_LIFE_SECONDS = (10.0, 20.0)
LONG_LIFE_SHARE = 0.1
DATABASE_OUTAGE_SECONDS = 10
"""Longer than the five unexpected failures a command is allowed at the test's retry delays
(0.5, 1, 2, 2, 2 s): a database outage must count as a passing failure, not as a bug."""

Data = Callable[[str, str], dict[str, Any]]


def _only_id(instance_id: str, _subdomain: str) -> dict[str, Any]:
    return {"instance_id": instance_id}


def _backup(instance_id: str, _subdomain: str) -> dict[str, Any]:
    return {"instance_id": instance_id, "backup_id": str(uuid.uuid4())}


def _resize(instance_id: str, _subdomain: str) -> dict[str, Any]:
    plan = {"cpu_millicores": 750, "memory_mib": 1536, "storage_gib": 5}
    return {"instance_id": instance_id, "plan": plan}


def _suspend(instance_id: str, _subdomain: str) -> dict[str, Any]:
    return {"instance_id": instance_id, "reason": "payment_failed"}


def _delete(instance_id: str, _subdomain: str) -> dict[str, Any]:
    return {"instance_id": instance_id, "final_backup": True}


MIXED: list[tuple[str, Data]] = [
    ("provision", provision_data),
    ("stop", _only_id),
    ("start", _only_id),
    ("restart", _only_id),
    ("backup", _backup),
    ("resize", _resize),
    ("suspend", _suspend),
    ("unsuspend", _only_id),
]
"""Every instance goes through these; then a third of them are deleted, the rest stopped."""

SHORT: list[tuple[str, Data]] = [
    ("provision", provision_data),
    ("stop", _only_id),
    ("start", _only_id),
    ("backup", _backup),
]
"""Enough for an outage of a shared component to meet long and quick commands."""


@dataclass(frozen=True)
class Scene:
    """One test's vhost, namespace, state store (PostgreSQL) and consumer process."""

    amqp_url: str
    namespace: str
    store: Engine
    consumer: ConsumeProcess
    api: client.ApiClient


@dataclass
class Run:
    """Instances, the commands sent to them and what answered."""

    scene: Scene
    instances: list[tuple[str, str]]
    deleted: set[str]
    observer: Observer
    sent: dict[str, str] = field(default_factory=dict)
    """Command id -> verb."""

    @classmethod
    def of(cls, scene: Scene, count: int) -> "Run":
        """`count` new instances, every third to be deleted at the end."""
        instances = [new_instance() for _ in range(count)]
        deleted = {i for n, (i, _) in enumerate(instances) if n % 3 == 0}
        observer = Observer(scene.amqp_url, queue=f"test.observer.{uuid.uuid4().hex[:8]}")
        return cls(scene, instances, deleted, observer)

    def drive(
        self, rounds: list[tuple[str, Data]], during: Callable[[int], None] = lambda _: None
    ) -> None:
        """Each round, then the final delete-or-stop round; `during(n)` runs once round n is
        published, before its answers are awaited."""
        final = ("delete|stop", lambda i, s: _delete(i, s) if i in self.deleted else _only_id(i, s))
        for number, (verb, data) in enumerate([*rounds, final]):
            ids: set[str] = set()
            for instance_id, subdomain in self.instances:
                this = verb.split("|")[instance_id not in self.deleted] if "|" in verb else verb
                message = build_command(
                    f"{T}{this}.v1", data(instance_id, subdomain), source="/tests"
                )
                command_id = message.properties.message_id or ""
                publish(self.scene.amqp_url, [(command_id, message.body)], message.routing_key)
                self.sent[command_id] = this
                ids.add(command_id)
            during(number)
            self.observer.wait_for(functools.partial(_all_answered, ids), timeout=300)

    def verify(self, name: str, **counts: int) -> Counter[tuple[str, str]]:
        """Check every guarantee, print the counts; the outcomes by (verb, event kind)."""
        bodies = self.observer.wait_for(lambda b: set(self.sent) <= set(_answers(b)), 60)
        answers = _answers(bodies)
        duplicates = sum(1 for c in self.sent if len(answers.get(c, ())) > 1)
        lost = sum(1 for c in self.sent if c not in answers)
        republished = len(bodies) - len({b["id"] for b in bodies})  # the same id: allowed
        unique = {b["id"]: b for b in bodies}.values()
        kinds = Counter((self.sent[b["causationid"]], event_kind(b)) for b in unique)
        extra = "".join(f", {key.replace('_', ' ')} {value}" for key, value in counts.items())
        print(
            f"\n{name}: commands {len(self.sent)}, events {len(answers)}, "
            f"duplicates {duplicates}, lost {lost}{extra}, republished (same id) {republished}"
        )
        print(f"outcomes: {dict(sorted(kinds.items()))}")
        assert duplicates == 0
        assert lost == 0
        failures = [
            (self.sent[b["causationid"]], b["data"].get("error"))
            for b in unique
            if event_kind(b) in FAILURES
        ]
        assert not failures, failures
        with Session(self.scene.store) as session:
            inbox = {e.command_id: e.terminal_event_id for e in session.scalars(select(InboxEntry))}
            backups = list(session.scalars(select(Backup)))
        assert {c: inbox.get(c) for c in self.sent} == {c: min(answers[c]) for c in self.sent}
        self._side_effects_once(backups)
        summary = _reconcile_dry_run(self.scene.consumer)
        live = len(self.instances) - len(self.deleted)
        assert f"{live} instances checked, 0 repairs planned, 0 orphans" in summary, summary
        return kinds

    def _side_effects_once(self, backups: list[Backup]) -> None:
        backed_up = sum(1 for verb in self.sent.values() if verb == "backup") // len(self.instances)
        live_objects = Counter(
            Secret=1 + min(backed_up, 1),  # the credentials; the Jobs' key once backed up
            PersistentVolumeClaim=1,
            Service=1,
            Deployment=1,
            Job=1 + backed_up,  # the database initialisation and each backup
            Ingress=1,
            NetworkPolicy=2,  # the server's and its Jobs'
        )
        ids = [i for i, _ in self.instances]
        objects = {i: +_objects(self.scene.api, self.scene.namespace, i) for i in ids}
        assert objects == {i: Counter() if i in self.deleted else live_objects for i in ids}
        databases = {i: _tenant_databases(i) for i in ids}
        assert databases == {i: (0, 0) if i in self.deleted else (1, 1) for i in ids}
        assert all(b.status == "completed" for b in backups), [(b.id, b.status) for b in backups]
        final = {i: int(i in self.deleted) for i in ids}  # the delete's final backup
        assert Counter(b.instance_id for b in backups) == Counter(
            {i: backed_up + final[i] for i in ids if backed_up + final[i]}
        )
        # One object per backup in the real object storage, and no upload left unfinished.
        storage = ObjectBackups.connect(backup_settings(default_layout()))
        recorded = {b.location for b in backups if b.location is not None}
        for instance_id in ids:
            found = _keys(storage, instance_id)
            assert found["objects"] == sorted(
                uri.split("/", 3)[3] for uri in recorded if f"/{instance_id}/" in uri
            ), instance_id
            assert found["uploads"] == [], instance_id


def _keys(storage: ObjectBackups, instance_id: str) -> dict[str, list[str]]:
    settings = storage.settings
    secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else ""
    client = s3_client(settings.endpoint_url, settings.region, settings.access_key_id or "", secret)
    prefix = storage.instance_prefix(instance_id)
    objects = client.list_objects_v2(Bucket=settings.bucket, Prefix=prefix).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=settings.bucket, Prefix=prefix)
    return {
        "objects": sorted(item["Key"] for item in objects),
        "uploads": [upload["Key"] for upload in uploads.get("Uploads", [])],
    }


class Killer(threading.Thread):
    """Kills the consumer with SIGKILL 1-4 s after it is ready (seeded) and starts a new one at
    once; one life in ten lasts 10-20 s.

    The long lives let a step that takes longer than the short ones complete: on a loaded
    machine (CI's 2 cores), a backup's first step (the instance's object-storage identity, the
    first Kubernetes calls of a fresh process) took over 4 s, never finished within a short
    life, and the command ended `delivery_limit` after 50 deliveries. Crashes every 2.5 s with
    no life long enough for the slowest step test the machine's speed, not the service.
    """

    def __init__(self, consumer: ConsumeProcess, seed: int) -> None:
        super().__init__(name="killer", daemon=True)
        self.consumer = consumer
        self.rng = random.Random(seed)  # noqa: S311 - reproducible moments, not a secret
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(self._life()):
                self.consumer.kill()
                self.consumer.start()
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            self.error = error

    def _life(self) -> float:
        """Seconds until the next kill."""
        if self.rng.random() < LONG_LIFE_SHARE:
            return self.rng.uniform(*LONG_LIFE_SECONDS)
        return self.rng.uniform(*LIFE_SECONDS)

    def finish(self) -> None:
        """Stop killing; the consumer is left running."""
        self.done.set()
        self.join(timeout=120)
        assert self.error is None, f"the killer failed: {self.error!r}"


@pytest.fixture
def scene(
    amqp_url: str,
    namespace: str,
    postgres_database: str,
    k8s_api: client.ApiClient,
    tmp_path: Path,
) -> Iterator[Scene]:
    """A started consumer process of this test's vhost and namespace, with its state on
    PostgreSQL as a replicated deployment keeps it."""
    store = create_engine(StoreSettings(url=SecretStr(postgres_database)))
    consumer = ConsumeProcess.for_test(amqp_url, postgres_database, namespace, tmp_path / "logs")
    consumer.start()
    try:
        yield Scene(amqp_url, namespace, store, consumer, k8s_api)
    finally:
        consumer.close()
        store.dispose()


def _all_answered(ids: set[str], bodies: list[dict[str, Any]]) -> bool:
    return ids <= set(_answers(bodies))


def _answers(bodies: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Command id -> the distinct ids of the events that answered it."""
    found: dict[str, set[str]] = {}
    for body in bodies:
        if body.get("causationid") and body.get("type") not in FOLLOWING:
            found.setdefault(body["causationid"], set()).add(body["id"])
    return found


def _objects(api: client.ApiClient, namespace: str, instance_id: str) -> Counter[str]:
    """How many objects of each kind carry the instance's label (not being deleted)."""
    selector = f"{INSTANCE_LABEL}={instance_id}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    batch, net = client.BatchV1Api(api), client.NetworkingV1Api(api)
    listings: dict[str, Callable[..., Any]] = {
        "Secret": core.list_namespaced_secret,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
        "Service": core.list_namespaced_service,
        "Deployment": apps.list_namespaced_deployment,
        "Job": batch.list_namespaced_job,
        "Ingress": net.list_namespaced_ingress,
        "NetworkPolicy": net.list_namespaced_network_policy,
    }
    found = Counter[str]()
    for kind, listing in listings.items():
        items = listing(namespace, label_selector=selector).items
        found[kind] = sum(1 for o in items if o.metadata.deletion_timestamp is None)
    return found


def _tenant_databases(instance_id: str) -> tuple[int, int]:
    """(roles, databases) of the instance on the tenant PostgreSQL."""
    names = names_of(instance_id)
    with psycopg.connect(stack.require("postgres").postgres_admin_url) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = %s),"
            " (SELECT count(*) FROM pg_database WHERE datname = %s)",
            (names.role, names.database),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _reconcile_dry_run(consumer: ConsumeProcess) -> str:
    """`instance-service reconcile --dry-run` on the consumer's settings: its summary line."""
    result = subprocess.run(
        [sys.executable, "-m", "instance_service", "reconcile", "--dry-run"],
        env=consumer.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _outage(
    rounds: set[int], stop: Callable[[], None], start: Callable[[], None], seconds: float = 0
) -> Callable[[int], None]:
    """During each of these rounds, 2 s after it is published: stop, wait `seconds`, start."""

    def during(number: int) -> None:
        if number in rounds:
            time.sleep(2)
            stop()
            time.sleep(seconds)
            start()

    return during


def _lived_through(run: Run, during: Callable[[int], None]) -> Counter[str]:
    """Drive the short rounds with `during`: the same process must live through them, be ready
    and stop cleanly. What it logged, counted by message."""
    consumer = run.scene.consumer
    pid = consumer.pid()
    run.drive(SHORT, during=during)
    assert consumer.pid() == pid
    assert consumer.process is not None
    assert consumer.process.poll() is None, "the consumer exited instead of recovering"
    assert consumer.ready()
    assert consumer.stop() == 0, consumer.log_tail()
    return Counter(e["message"] for e in consumer.log_entries())


def _interrupted(consumer: ConsumeProcess) -> set[str]:
    """Commands whose handler ran again on a redelivery (a kill or a lost channel hit it)."""
    return {
        e["command_id"] for e in consumer.log_entries() if e["message"] == "command redelivered"
    }


def test_kill_9_at_random_moments_during_mixed_commands_loses_and_repeats_nothing(
    scene: Scene,
) -> None:
    seed = int(os.environ.get("FAULT_SEED", str(time.time_ns() % 1_000_000)))
    print(f"\nFAULT_SEED={seed}")
    run = Run.of(scene, 12 * SCALE)
    killer = Killer(scene.consumer, seed)
    killer.start()
    try:
        run.drive(MIXED)
    finally:
        killer.finish()
    assert scene.consumer.stop() == 0, scene.consumer.log_tail()
    interrupted = _interrupted(scene.consumer)
    run.verify(
        "kill -9 during mixed commands",
        kills=scene.consumer.kills,
        commands_interrupted_and_resumed=len(interrupted),
    )
    assert len(run.sent) >= 100
    assert interrupted, "no kill landed while a handler ran: the test proved nothing"


@pytest.mark.devstack_lifecycle
def test_rabbitmq_restarted_mid_stream_loses_nothing_and_the_consumer_reconnects(
    scene: Scene,
) -> None:
    layout = default_layout()
    broker = RabbitMQ(layout, credentials.load_or_create(layout))
    # While provisions (long) run, and again while starts (quick) run.
    during = _outage({0, 2}, broker.stop, broker.start)
    run = Run.of(scene, 6 * SCALE)
    reconnects = _lived_through(run, during)["connection lost; reconnecting"]
    run.verify("RabbitMQ restarted twice", broker_restarts=2, reconnects=reconnects)
    assert reconnects >= 2


@pytest.mark.devstack_lifecycle
def test_postgresql_restarted_mid_stream_the_consumer_recovers(scene: Scene) -> None:
    layout = default_layout()
    database = Postgres(layout, credentials.load_or_create(layout))
    # While provisions make tenant databases, and again while backups run.
    during = _outage({0, 3}, database.down, database.start, DATABASE_OUTAGE_SECONDS)
    run = Run.of(scene, 6 * SCALE)
    logged = _lived_through(run, during)
    assert logged["unexpected failure; will retry"] == 0, logged
    assert logged["retry scheduled"] > 0, "the outage never met a command"
    run.verify(
        "PostgreSQL restarted twice",
        database_restarts=2,
        retries=logged["retry scheduled"],
        commands_interrupted_and_resumed=len(_interrupted(scene.consumer)),
    )
