"""The pod lifecycle kwok plays on the fake node: ready, never ready (on request), complete, gone.

kwok replaces its built-in pod stages as soon as it is given any, so all four are written here.
Their selectors exclude one another, so kwok never has to pick between two at random:

- a new pod becomes Running and Ready with an IP, unless it carries `devstack.local/ready=never`;
- a pod with that label becomes Running with an IP but never Ready (failure tests: a rollout
  that cannot finish);
- a Job's running pod succeeds;
- a pod marked for deletion loses its finalizers and is deleted.
"""

import json
from typing import Any

NEVER_READY_LABEL = "devstack.local/ready"
NEVER_READY_VALUE = "never"

_POD = {"apiGroup": "v1", "kind": "Pod"}
_ALIVE = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_NO_IP = {"key": ".status.podIP", "operator": "DoesNotExist"}
_NEVER_READY_KEY = f'.metadata.labels["{NEVER_READY_LABEL}"]'

_STARTED = """{{ $now := Now }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName false ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
"""  # noqa: E501 - one template line per field reads best


def _condition(kind: str, ready: bool) -> str:
    status, reason = ('"True"', "") if ready else ('"False"', "\n  reason: ContainersNotReady")
    return (
        f"- type: {kind}\n  status: {status}{reason}\n"
        "  lastTransitionTime: {{ $now | Quote }}\n"
    )


def _running(ready: bool) -> str:
    containers = (
        "containerStatuses:\n"
        "{{ range .spec.containers }}\n"
        "- name: {{ .name | Quote }}\n"
        "  image: {{ .image | Quote }}\n"
        f"  ready: {'true' if ready else 'false'}\n"
        "  started: true\n"
        "  restartCount: 0\n"
        "  state:\n"
        "    running:\n"
        "      startedAt: {{ $now | Quote }}\n"
        "{{ end }}\n"
    )
    conditions = (
        "conditions:\n"
        + _condition("Initialized", True)
        + _condition("Ready", ready)
        + _condition("ContainersReady", ready)
    )
    return _STARTED + conditions + containers


_COMPLETED = """{{ $now := Now }}
phase: Succeeded
conditions:
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
- type: ContainersReady
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
"""


def _stage(name: str, expressions: list[dict[str, Any]], next_: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": _POD,
            "selector": {"matchExpressions": expressions},
            "next": next_,
        },
    }


def stages() -> list[dict[str, Any]]:
    """The four pod stages, in the order kwok is given them."""
    never = {"key": _NEVER_READY_KEY, "operator": "In", "values": [NEVER_READY_VALUE]}
    not_never = {"key": _NEVER_READY_KEY, "operator": "NotIn", "values": [NEVER_READY_VALUE]}
    return [
        _stage(
            "devstack-pod-ready",
            [_ALIVE, _NO_IP, not_never],
            {"statusTemplate": _running(ready=True)},
        ),
        _stage(
            "devstack-pod-never-ready",
            [_ALIVE, _NO_IP, never],
            {"statusTemplate": _running(ready=False)},
        ),
        _stage(
            "devstack-pod-complete",
            [
                _ALIVE,
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _COMPLETED},
        ),
        _stage(
            "devstack-pod-delete",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ]


def kwok_config() -> str:
    """kwok's --config file: its options, then the stages (JSON documents are YAML)."""
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {},
    }
    return "\n---\n".join(json.dumps(document) for document in [options, *stages()]) + "\n"
