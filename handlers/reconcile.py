"""Fleet reconciliation: the store says what should exist, the cluster says what does; repair the
difference. Seven list requests (one per kind, label-selected) however large the fleet, then one
request per repair.

    plan     for each instance at rest (running, degraded, stopped, suspended, terminated): its
             Service, NetworkPolicy, Ingress, volume and Deployment as the handlers would build
             them, compared with the cluster (k8s.drift): missing -> create, drifted -> apply
             again, replicas off -> scale (1 while it serves, 0 otherwise). A missing Secret
             cannot be rebuilt (the tenant role holds its password): reported, not repaired.
             Instances with an operation in progress, in `error` or `provisioning` are left to
             their commands.
    orphans  objects carrying an instance label whose instance is unknown or deleted. Reported;
             removed with `remove_orphans`, except volumes and Secrets, which hold data and
             credentials (delete with keep_data leaves them on purpose).
    repair   per instance, under its lock (busy: skipped this round), after checking that its
             status is still the one planned for.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.platform import Cluster, Platform
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import spec_of_instance
from k8s.drift import differences
from k8s.exposure import build_ingress, build_network_policy, build_service
from k8s.spec import MANAGED_BY
from k8s.workload import Manifest, build_deployment, build_volume
from messages.commands import AnyCommand, ReconcileCommand
from messages.events import FleetReconciledData, FleetReconciledEvent
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.locks import InstanceBusyError
from store.records import InstanceRecord

INSTANCE_LABEL = "odoo.saas/instance-id"
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},{INSTANCE_LABEL}"
KINDS = (
    "Secret",
    "Service",
    "NetworkPolicy",
    "Ingress",
    "PersistentVolumeClaim",
    "Deployment",
    "Job",
)
"""Listed once each; also the order repairs are made in (the Service before any pod)."""
KEPT_ORPHANS = frozenset({"Secret", "PersistentVolumeClaim"})
"""Orphans never removed: they hold credentials and data."""
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
    unrepairable: list[tuple[str, str]] = field(default_factory=list)
    """(instance id, why)."""
    left: list[tuple[str, str]] = field(default_factory=list)
    """(instance id, why): instances reconciliation does not touch now."""
    statuses: dict[str, InstanceStatus] = field(default_factory=dict)
    """The status each planned instance had when planned."""

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
        out += [f"cannot repair {instance}: {why}" for instance, why in self.unrepairable]
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


def observe(cluster: Cluster, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """Every object of ours in the namespace: one list request per kind."""
    return {kind: cluster.documents(kind, namespace, SELECTOR) for kind in KINDS}


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
    for instance in instances:
        if instance.status is S.DELETED:
            continue
        known.add(instance.id)
        result.checked += 1
        if instance.status not in AT_REST:
            why = "an operation is in progress" if instance.current_operation_id else None
            result.left.append((instance.id, why or f"status {instance.status}"))
            continue
        result.statuses[instance.id] = instance.status
        _plan_instance(instance, found, platform, result)
    for kind, objs in observed.items():
        for obj in objs:
            owner = obj["metadata"].get("labels", {}).get(INSTANCE_LABEL, "")
            if owner not in known:
                name = obj["metadata"]["name"]
                result.orphans.append(Orphan(kind, name, owner, kind not in KEPT_ORPHANS))
    return result


def _plan_instance(
    instance: InstanceRecord,
    found: dict[tuple[str, str], dict[str, Any]],
    platform: Platform,
    result: Plan,
) -> None:
    spec = spec_of_instance(instance)
    namespace, tenants = platform.namespace, platform.tenants
    if (("Secret", spec.names.secret)) not in found:
        result.unrepairable.append(
            (
                instance.id,
                f"Secret {spec.names.secret} is missing (its passwords cannot be rebuilt)",
            )
        )
    replicas = 1 if instance.status in SERVING else 0
    desired = (
        build_service(spec, namespace),
        build_network_policy(spec, tenants, namespace),
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
    namespace = platform.namespace
    by_instance: dict[str, list[Repair]] = {}
    for repair in found.repairs:
        by_instance.setdefault(repair.instance_id, []).append(repair)
    repaired, made, busy = 0, 0, []
    for instance_id, repairs in by_instance.items():
        try:
            with ledger.locks.hold(instance_id):
                now = ledger.instance(instance_id)
                if now is None or now.status != found.statuses[instance_id]:
                    continue  # changed since the plan: the next round sees it as it is
                for repair in sorted(repairs, key=lambda r: KINDS.index(r.kind)):
                    if repair.action == "scale" and repair.replicas is not None:
                        cluster.scale(repair.name, namespace, repair.replicas)
                    elif repair.manifest is not None:
                        cluster.apply(repair.manifest)
                    made += 1
                repaired += 1
        except InstanceBusyError:
            busy.append(instance_id)
    removed = 0
    if remove_orphans:
        for orphan in found.orphans:
            if orphan.removable:
                cluster.delete(orphan.kind, orphan.name, namespace)
                removed += 1
    return Outcome(found, repaired, made, removed, tuple(busy))


class Reconcile:
    """The `odoo.fleet.reconcile.v1` handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: AnyCommand, context: HandlerContext) -> HandlerResult:
        """Plan against the whole fleet, repair, answer with the counts."""
        if not isinstance(command, ReconcileCommand):
            raise TypeError(f"reconcile cannot handle {command.type}")
        cluster = self.platform.cluster()
        found = plan(
            context.ledger.instances(),
            observe(cluster, self.platform.namespace),
            self.platform,
        )
        outcome = carry_out(
            found,
            cluster,
            context.ledger,
            self.platform,
            remove_orphans=self.platform.kubernetes.remove_orphans,
        )
        data = FleetReconciledData(
            checked=found.checked,
            repaired=outcome.repaired_instances,
            orphans=len(found.orphans),
        )
        return Completed(FleetReconciledEvent.caused_by(command, data))
