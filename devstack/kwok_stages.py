"""The pod lifecycle kwok plays on the fake node: ready, never ready (on request), complete, gone.

kwok replaces its built-in pod stages as soon as it is given any, so all are written here.
Their selectors exclude one another, so kwok never has to pick between two at random:

- a new pod becomes Running and Ready with an IP, unless it carries `devstack.local/ready=never`
  (the service's own Deployments' pods too, e.g. deploy/'s consumers scaled by KEDA);
- a pod with that label becomes Running with an IP but never Ready (failure tests: a rollout
  that cannot finish);
- a Job's running pod succeeds, or fails if it carries `devstack.local/job=fail` (failure tests
  of update Jobs);
- a pod marked for deletion loses its finalizers and is deleted.

Pods of the service's own Jobs (`app.kubernetes.io/name=instance-service`, owned by a Job) are
left to devstack.jobrunner, which runs them for real; only their deletion is kwok's.
"""

import json
from typing import Any

NEVER_READY_LABEL = "devstack.local/ready"
NEVER_READY_VALUE = "never"
JOB_FAILS_LABEL = "devstack.local/job"
JOB_FAILS_VALUE = "fail"
SERVICE_NAME = "instance-service"
"""`app.kubernetes.io/name` of the service's own Job pods, which devstack.jobrunner runs."""

NODE_LEASE_SECONDS = 40
_POD = {"apiGroup": "v1", "kind": "Pod"}
_ALIVE = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_NO_IP = {"key": ".status.podIP", "operator": "DoesNotExist"}
_NEVER_READY_KEY = f'.metadata.labels["{NEVER_READY_LABEL}"]'
_JOB_FAILS_KEY = f'.metadata.labels["{JOB_FAILS_LABEL}"]'
_NAME_KEY = '.metadata.labels["app.kubernetes.io/name"]'

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


def _finished(succeeded: bool) -> str:
    phase, reason, code = ("Succeeded", "Completed", 0) if succeeded else ("Failed", "Error", 1)
    return f"""{{{{ $now := Now }}}}
phase: {phase}
conditions:
- type: Ready
  status: "False"
  reason: {"PodCompleted" if succeeded else "PodFailed"}
  lastTransitionTime: {{{{ $now | Quote }}}}
- type: ContainersReady
  status: "False"
  reason: {"PodCompleted" if succeeded else "PodFailed"}
  lastTransitionTime: {{{{ $now | Quote }}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: {code}
      reason: {reason}
      startedAt: {{{{ $now | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
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
    """The pod stages, in the order kwok is given them."""
    never = {"key": _NEVER_READY_KEY, "operator": "In", "values": [NEVER_READY_VALUE]}
    not_never = {"key": _NEVER_READY_KEY, "operator": "NotIn", "values": [NEVER_READY_VALUE]}
    # The service's own Job pods are run by devstack.jobrunner, not played by kwok.
    not_ours = {"key": _NAME_KEY, "operator": "NotIn", "values": [SERVICE_NAME]}
    job_pod = {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]}
    # The service's own Deployments (deploy/'s consumers, scaled by KEDA) are played like any
    # other: only its Jobs' pods are run for real.
    ours = {"key": _NAME_KEY, "operator": "In", "values": [SERVICE_NAME]}
    replica = {
        "key": ".metadata.ownerReferences.[].kind",
        "operator": "In",
        "values": ["ReplicaSet"],
    }
    running = {"key": ".status.phase", "operator": "In", "values": ["Running"]}
    fails = {"key": _JOB_FAILS_KEY, "operator": "In", "values": [JOB_FAILS_VALUE]}
    not_fails = {"key": _JOB_FAILS_KEY, "operator": "NotIn", "values": [JOB_FAILS_VALUE]}
    return [
        _stage(
            "devstack-pod-ready",
            [_ALIVE, _NO_IP, not_never, not_ours],
            {"statusTemplate": _running(ready=True)},
        ),
        _stage(
            "devstack-own-replica-ready",
            [_ALIVE, _NO_IP, ours, replica],
            {"statusTemplate": _running(ready=True)},
        ),
        _stage(
            "devstack-pod-never-ready",
            [_ALIVE, _NO_IP, never, not_ours],
            {"statusTemplate": _running(ready=False)},
        ),
        _stage(
            "devstack-pod-complete",
            [_ALIVE, running, job_pod, not_ours, not_fails],
            {"statusTemplate": _finished(succeeded=True)},
        ),
        _stage(
            "devstack-job-pod-fails",
            [_ALIVE, running, job_pod, not_ours, fails],
            {"statusTemplate": _finished(succeeded=False)},
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
        # A node Lease renewed every few seconds: without one, kwok's status heartbeat (every
        # 20-45 s) let the node controller see the node NotReady for seconds each minute and
        # mark its pods not Ready, which kwok never undoes.
        "options": {"nodeLeaseDurationSeconds": NODE_LEASE_SECONDS},
    }
    return "\n---\n".join(json.dumps(document) for document in [options, *stages()]) + "\n"
