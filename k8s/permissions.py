"""The Kubernetes permissions the service needs in the tenant namespace, written down once.

`deploy/base/rbac.yaml` grants exactly these (a test compares the two), the least-privilege
tests run the handlers with nothing more, and `consume` checks at start-up, with a
SelfSubjectRulesReview, that its credentials have them, naming what is missing.

Objects are created and changed by server-side apply: a `patch`, which the API server also
authorizes as `create` when the object does not exist yet; no `update` anywhere. Pods are only
ever listed and watched (to explain a failed rollout, to wait until a stopped instance's pods
are gone, to place a backup Job beside the server). Fleet reconciliation lists each kind it
repairs once per run; Secrets are never listed (that would hand every tenant's passwords to
one call): they are only read by name.
"""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    """Verbs on one resource of one API group ("" is the core group)."""

    group: str
    resource: str
    verbs: frozenset[str]

    def describe(self, verbs: Iterable[str] | None = None) -> str:
        """E.g. `get, patch deployments.apps`."""
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{', '.join(sorted(verbs if verbs is not None else self.verbs))} {resource}"


def _grant(group: str, resource: str, *verbs: str) -> Permission:
    return Permission(group, resource, frozenset(verbs))


CONSUMER_PERMISSIONS = (
    _grant("", "secrets", "get", "create", "patch", "delete"),
    _grant("", "services", "get", "create", "list", "patch", "delete"),
    _grant("", "persistentvolumeclaims", "get", "create", "list", "watch", "patch", "delete"),
    _grant("", "pods", "list", "watch"),
    _grant("apps", "deployments", "get", "create", "list", "watch", "patch", "delete"),
    _grant("apps", "deployments/scale", "patch"),
    _grant("batch", "jobs", "get", "create", "list", "watch", "patch", "delete"),
    _grant("networking.k8s.io", "ingresses", "get", "create", "list", "patch", "delete"),
    _grant("networking.k8s.io", "networkpolicies", "get", "create", "list", "patch", "delete"),
    _grant("cert-manager.io", "certificates", "get", "create", "list", "watch", "patch", "delete"),
)
"""What the command handlers do in the tenant namespace (Certificates: customers' domains)."""

WATCHER_PERMISSIONS = (
    _grant("", "pods", "list", "watch"),
    _grant("apps", "deployments", "list", "watch"),
    _grant("cert-manager.io", "certificates", "list", "watch"),
)
"""What the watcher reads in the tenant namespace (it changes nothing there)."""

VERB_OF_CALL = {
    "read": "get",
    "list": "list",
    "watch": "watch",
    "patch": "patch",
    "delete": "delete",
}
"""The RBAC verb of each kind of request k8s.apply.Kubernetes makes."""


@dataclass(frozen=True)
class Rule:
    """One resource rule as a SelfSubjectRulesReview reports it."""

    groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    names_only: bool = False
    """The rule names the objects it applies to (resourceNames): not a grant on the kind."""

    def allows(self, group: str, resource: str, verb: str) -> bool:
        """Whether this rule grants `verb` on `resource` of `group` (wildcards included)."""
        return (
            not self.names_only
            and (group in self.groups or "*" in self.groups)
            and (resource in self.resources or "*" in self.resources)
            and (verb in self.verbs or "*" in self.verbs)
        )


def missing(
    rules: Iterable[Rule], needed: Iterable[Permission] = CONSUMER_PERMISSIONS
) -> list[str]:
    """The needed permissions no rule grants, described (empty: all granted)."""
    held = list(rules)
    gaps: list[str] = []
    for permission in needed:
        lacking = [
            verb
            for verb in sorted(permission.verbs)
            if not any(rule.allows(permission.group, permission.resource, verb) for rule in held)
        ]
        if lacking:
            gaps.append(permission.describe(lacking))
    return gaps
