"""Fleet reconciliation: the store says what should exist, the cluster says what does; repair the
difference. Seven list requests (one per kind, label-selected) however large the fleet, then one
request per repair. The cluster is listed before the store is read, so an instance provisioned
meanwhile is known to the plan rather than mistaken for an orphan.

    plan     for each instance at rest (running, degraded, stopped, suspended, terminated): its
             Service, NetworkPolicy, customer domains' Certificates, Ingress (with those
             domains' hosts), volume and Deployment as the handlers would build them, compared
             with the cluster (k8s.drift): missing -> create, drifted -> apply again, replicas
             off -> scale (1 while it serves, 0 otherwise). A cluster without cert-manager's
             CRD has no Certificates to list: reconciled without them. Secrets are never
             listed (one call would carry every tenant's passwords) and cannot be rebuilt (the
             tenant role holds the password): not reconciled. Instances with an operation in
             progress, in `error` or `provisioning` are left to their commands.
    orphans  objects carrying an instance label whose instance is unknown or deleted, and the
             Certificates of a domain its instance no longer has. Reported;
             removed with `remove_orphans`, except volumes, which hold data (delete with
             keep_data leaves them on purpose). An orphan is deleted under its instance's lock,
             after checking again that the store does not know it.
    repair   per instance, under its lock (busy: skipped this round), only if its record is
             still the one planned from (a resize or upgrade finished meanwhile: next round);
             an object the API refuses is reported and the others go on.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.declarations import Declaration, Queue
from handlers.platform import Cluster, Platform
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from k8s.certificates import build_certificate
from k8s.drift import differences
from k8s.exposure import build_ingress, build_service
from k8s.kinds import CERTIFICATE, kind_named
from k8s.network import build_network_policies
from k8s.spec import INSTANCE_LABEL, MANAGED_BY
from k8s.workload import Manifest, build_deployment, build_volume
from messages.commands import ReconcileCommand
from messages.errors import PermanentError, RetryableError
from messages.events import FleetReconciledData, FleetReconciledEvent
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.locks import InstanceBusyError
from store.records import InstanceRecord

log = logging.getLogger(__name__)

SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},{INSTANCE_LABEL}"
KINDS = (
    "Service",
    "NetworkPolicy",
    "Certificate",
    "Ingress",
    "PersistentVolumeClaim",
    "Deployment",
    "Job",
)
"""Listed once each; also the order repairs are made in (the Service before any pod)."""
KEPT_ORPHANS = frozenset({"PersistentVolumeClaim"})
"""Orphans never removed: they hold data (delete with keep_data leaves them on purpose)."""
S = InstanceStatus
SERVING = frozenset({S.RUNNING, S.DEGRADED})
AT_REST = SERVING | {S.STOPPED, S.SUSPENDED, S.TERMINATED}

Action = Literal["create", "apply", "scale"]


@dataclass(frozen=True)
class Repair:
    """One change that brings an object in line."""

    instance_id: str
    kind: str
    name: str
    action: Action
    detail: str
    manifest: Manifest | None = None
    replicas: int | None = None


@dataclass(frozen=True)
class Orphan:
    """An object of ours whose instance is gone or unknown."""

    kind: str
    name: str
    instance_id: str
    removable: bool


@dataclass
class Plan:
    """What a reconciliation found and would do."""

    checked: int = 0
    repairs: list[Repair] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)
    """(instance id, why): instances reconciliation does not touch now."""
    records: dict[str, InstanceRecord] = field(default_factory=dict)
    """Each planned instance as it was read: repairs are made only if it is still so."""

    def lines(self) -> list[str]:
        """The plan for people, one line per finding."""
        out = [
            f"repair {r.instance_id} {r.kind} {r.name}: {r.action} ({r.detail})"
            for r in self.repairs
        ]
        out += [
            f"orphan {o.kind} {o.name} (instance {o.instance_id}): "
            + ("removable" if o.removable else "kept: holds data or credentials")
            for o in self.orphans
        ]
        out += [f"left alone {instance}: {why}" for instance, why in self.left]
        return out


@dataclass(frozen=True)
class Outcome:
    """What a reconciliation did."""

    plan: Plan
    repaired_instances: int
    repairs_made: int
    orphans_removed: int
    busy: tuple[str, ...]
    failed: tuple[tuple[str, str], ...] = ()
    """(instance id or object, why): refused by the API; the rest went on."""


def observe(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    """Every object of ours in the cluster's namespace: one list request per kind."""
    observed: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        try:
            observed[kind] = cluster.documents(kind_named(kind), selector=SELECTOR)
        except PermanentError as error:
            if kind != CERTIFICATE.name or error.code != "kubernetes_not_found":
                raise
            log.info("no Certificates listed: cert-manager's CRDs are not installed")
            observed[kind] = []
    return observed


def plan(
    instances: Iterable[InstanceRecord],
    observed: dict[str, list[dict[str, Any]]],
    platform: Platform,
) -> Plan:
    """Compare the store with the cluster (no request: both are given)."""
    found: dict[tuple[str, str], dict[str, Any]] = {
        (kind, obj["metadata"]["name"]): obj for kind, objs in observed.items() for obj in objs
    }
    result = Plan()
    known: set[str] = set()
    certified: set[str] = set()
    """Certificates of instances at rest, by name, that their domains call for."""
    for instance in instances:
        if instance.status is S.DELETED:
            continue
        known.add(instance.id)
        result.checked += 1
        if instance.status not in AT_REST:
            why = "an operation is in progress" if instance.current_operation_id else None
            result.left.append((instance.id, why or f"status {instance.status}"))
            continue
        result.records[instance.id] = instance
        _plan_instance(instance, found, platform, result)
        certified.update(instance_spec(instance).names.certificate(d) for d in instance.domains)
    at_rest = set(result.records)
    for kind, objs in observed.items():
        for obj in objs:
            owner = obj["metadata"].get("labels", {}).get(INSTANCE_LABEL, "")
            name = obj["metadata"]["name"]
            unwanted = kind == CERTIFICATE.name and owner in at_rest and name not in certified
            if owner not in known or unwanted:
                result.orphans.append(Orphan(kind, name, owner, kind not in KEPT_ORPHANS))
    return result


def _plan_instance(
    instance: InstanceRecord,
    found: dict[tuple[str, str], dict[str, Any]],
    platform: Platform,
    result: Plan,
) -> None:
    spec = instance_spec(instance)
    namespace, tenants = platform.namespace, platform.tenants
    replicas = 1 if instance.status in SERVING else 0
    desired = (
        build_service(spec, namespace),
        *build_network_policies(spec, tenants, namespace),
        *(build_certificate(spec, d, platform.domains, namespace) for d in spec.domains),
        build_ingress(spec, tenants, namespace),
        build_volume(spec, tenants, namespace),
        build_deployment(spec, tenants, namespace, replicas=replicas),
    )
    for manifest in desired:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        observed = found.get((kind, name))
        if observed is None:
            result.repairs.append(Repair(instance.id, kind, name, "create", "missing", manifest))
            continue
        if kind == "PersistentVolumeClaim":
            continue  # immutable but for growing, which resize does; existence is what counts
        if kind == "Deployment":
            have = observed.get("spec", {}).get("replicas")
            manifest_without_replicas = _without_replicas(manifest)
            drift = differences(manifest_without_replicas, observed)
            if drift:
                result.repairs.append(
                    Repair(instance.id, kind, name, "apply", _said(drift), manifest)
                )
            elif have != replicas:
                result.repairs.append(
                    Repair(
                        instance.id,
                        kind,
                        name,
                        "scale",
                        f"replicas {have} -> {replicas}",
                        replicas=replicas,
                    )
                )
            continue
        drift = differences(manifest, observed)
        if drift:
            result.repairs.append(Repair(instance.id, kind, name, "apply", _said(drift), manifest))


def _without_replicas(manifest: Manifest) -> Manifest:
    spec = {key: value for key, value in manifest["spec"].items() if key != "replicas"}
    return {**manifest, "spec": spec}


def _said(drift: list[str]) -> str:
    shown = ", ".join(drift[:3])
    return f"differs at {shown}" + (f" and {len(drift) - 3} more" if len(drift) > 3 else "")


def carry_out(
    found: Plan, cluster: Cluster, ledger: Ledger, platform: Platform, *, remove_orphans: bool
) -> Outcome:
    """Make the planned repairs, instance by instance under its lock; remove orphans if asked."""
    by_instance: dict[str, list[Repair]] = {}
    for repair in found.repairs:
        by_instance.setdefault(repair.instance_id, []).append(repair)
    repaired, made, busy, failed = 0, 0, [], []
    for instance_id, repairs in by_instance.items():
        try:
            with ledger.locks.hold(instance_id):
                if ledger.instance(instance_id) != found.records[instance_id]:
                    continue  # changed since the plan: the next round sees it as it is
                made += _repair(repairs, cluster)
                repaired += 1
        except InstanceBusyError:
            busy.append(instance_id)
        except (RetryableError, PermanentError) as error:
            failed.append((instance_id, str(error)))
    removed = 0
    if remove_orphans:
        for orphan in (o for o in found.orphans if o.removable):
            try:
                removed += _remove(orphan, cluster, ledger)
            except InstanceBusyError:
                busy.append(orphan.instance_id)
            except (RetryableError, PermanentError) as error:
                failed.append((f"{orphan.kind} {orphan.name}", str(error)))
    return Outcome(found, repaired, made, removed, tuple(busy), tuple(failed))


def _repair(repairs: list[Repair], cluster: Cluster) -> int:
    for repair in sorted(repairs, key=lambda r: KINDS.index(r.kind)):
        if repair.action == "scale" and repair.replicas is not None:
            cluster.scale(repair.name, repair.replicas)
        elif repair.manifest is not None:
            cluster.apply(kind_named(repair.kind), repair.manifest)
    return len(repairs)


def _remove(orphan: Orphan, cluster: Cluster, ledger: Ledger) -> int:
    """Delete an orphan unless its instance turned up meanwhile (0 or 1 removed)."""
    with ledger.locks.hold(orphan.instance_id or "(no instance)"):
        known = ledger.instance(orphan.instance_id) if orphan.instance_id else None
        if known is not None and known.status is not S.DELETED:
            return 0
        cluster.delete(kind_named(orphan.kind), orphan.name)
        return 1


class Reconcile:
    """The `odoo.fleet.reconcile.v1` handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: ReconcileCommand, context: HandlerContext) -> HandlerResult:
        """Plan against the whole fleet, repair, answer with the counts."""
        cluster = self.platform.cluster()
        observed = observe(cluster)  # before the store: see above
        found = plan(context.ledger.instances(), observed, self.platform)
        outcome = carry_out(
            found,
            cluster,
            context.ledger,
            self.platform,
            remove_orphans=self.platform.kubernetes.remove_orphans,
        )
        for what, why in outcome.failed:
            log.warning("reconcile could not repair", extra={"object": what, "reason": why})
        data = FleetReconciledData(
            checked=found.checked,
            repaired=outcome.repaired_instances,
            orphans=len(found.orphans),
        )
        return Completed(FleetReconciledEvent.caused_by(command, data))


# The fleet's command changes no instance's status, and holds the fleet's lock: one at a time.
RECONCILE = Declaration(
    model=ReconcileCommand,
    queue=Queue.LONG,
    transition=None,
    event=FleetReconciledEvent,
    healthy_within=None,
    locks=False,
    handler=Reconcile,
)
