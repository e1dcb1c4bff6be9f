"""Runs this service's own Job pods on the host, as a kubelet would, for the local cluster.

kwok plays every other pod (Odoo's, and Odoo's init and update Jobs). Pods labelled
`app.kubernetes.io/name=instance-service` (the backup and restore Jobs, which run this
service's image) are picked up here once scheduled to the fake node: the container's command,
`instance-service job ...`, runs on the host with

- the pod's environment, values and Secret keys resolved;
- every volume mount mapped to a host directory: a claim to its hostPath volume (what the
  devstack volume provisioner made), or to the `subPath` directory in it (made if absent, as a
  kubelet does), an emptyDir to a fresh directory;
- the termination message file mapped to a file of its own.

Paths in the command's arguments and environment that lie under a mount are rewritten to the
host directory (a kubelet bind-mounts instead). When the command exits, the pod's status becomes
Succeeded or Failed with the container's terminated state and termination message, as a kubelet
writes it, exit code included: the Job controller reads it for the Jobs' pod failure policy
(run again after 75, fail after anything else). Anything but `instance-service job ...` is
refused (the pod fails with the reason). Like a kubelet, the runner waits out an API server
that does not answer (for a bounded time) rather than lose a pod's end.

    python -m devstack.jobrunner KUBECONFIG WORK_DIR
"""

import base64
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch

log = logging.getLogger("devstack.jobrunner")

SELECTOR = "app.kubernetes.io/name=instance-service"
READY_FILE = "job-runner.ready"
MAX_MESSAGE_BYTES = 4096
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
API_PATIENCE_SECONDS = 600.0
"""How long a call waits out an API server that does not answer (its pod's Job has a deadline)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How one pod's container runs on the host."""

    command: list[str]
    env: dict[str, str]
    termination_log: Path
    log_file: Path


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _executable(name: str) -> str:
    """`instance-service` is this repository's, next to the running interpreter."""
    return str(Path(sys.executable).parent / name)


def translate(value: str, mounts: dict[str, Path]) -> str:
    """A container path under a mount, as the host path (longest mount first)."""
    for mount in sorted(mounts, key=len, reverse=True):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(mounts[mount]) + value[len(mount.rstrip("/")) :]
    return value


def _unanswered(error: Exception) -> bool:
    """The API server was away or overloaded (not: it answered no)."""
    if isinstance(error, client.ApiException):
        return error.status in (0, None, 429) or int(error.status) >= 500
    return isinstance(error, urllib3.exceptions.HTTPError | OSError)


def patiently(call: Callable[[], T], what: str) -> T:
    """`call()`, tried again while the API server does not answer, up to API_PATIENCE_SECONDS."""
    deadline, delay = time.monotonic() + API_PATIENCE_SECONDS, 0.5
    while True:
        try:
            return call()
        except Exception as error:
            if not _unanswered(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: the API server did not answer (%r); trying again", what, error)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _secret_value(core: client.CoreV1Api, namespace: str, ref: Any) -> str:
    secret = patiently(lambda: core.read_namespaced_secret(ref.name, namespace), "secret")
    return base64.b64decode((secret.data or {})[ref.key]).decode()


def _volume_paths(core: client.CoreV1Api, pod: Any, work: Path) -> dict[str, Path]:
    """Volume name -> host directory."""
    paths: dict[str, Path] = {}
    for volume in pod.spec.volumes or []:
        if volume.persistent_volume_claim is not None:
            claim: Any = patiently(
                partial(
                    core.read_namespaced_persistent_volume_claim,
                    volume.persistent_volume_claim.claim_name,
                    pod.metadata.namespace,
                ),
                "claim",
            )
            if not claim.spec.volume_name:
                raise ValueError(f"claim {claim.metadata.name} is not bound yet")
            bound: Any = patiently(
                partial(core.read_persistent_volume, claim.spec.volume_name), "volume"
            )
            paths[volume.name] = Path(bound.spec.host_path.path)
        elif volume.empty_dir is not None:
            paths[volume.name] = work / "volumes" / volume.name
            paths[volume.name].mkdir(parents=True, exist_ok=True)
    return paths


def plan(core: client.CoreV1Api, pod: Any, work: Path, logs: Path) -> Plan:
    """Resolve a pod's only container into a host command; ValueError if it cannot run here."""
    containers = pod.spec.containers or []
    if len(containers) != 1:
        raise ValueError(f"expected one container, found {len(containers)}")
    container = containers[0]
    command = [*(container.command or []), *(container.args or [])]
    if command[:2] != ["instance-service", "job"]:
        raise ValueError(f"the devstack job runner runs only `instance-service job ...`: {command}")
    volumes = _volume_paths(core, pod, work)
    mounts = {}
    for mount in container.volume_mounts or []:
        if mount.name in volumes:
            host = volumes[mount.name] / (mount.sub_path or "")
            host.mkdir(parents=True, exist_ok=True)  # a kubelet makes a missing subPath too
            mounts[mount.mount_path] = host
    termination = work / "termination-log"
    termination.write_bytes(b"")
    mounts[container.termination_message_path or DEFAULT_TERMINATION_PATH] = termination
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)}
    for variable in container.env or []:
        if variable.value_from is not None and variable.value_from.secret_key_ref is not None:
            value = _secret_value(core, pod.metadata.namespace, variable.value_from.secret_key_ref)
            env[variable.name] = value  # a secret value is never rewritten or logged
        else:
            env[variable.name] = translate(variable.value or "", mounts)
    host_command = [_executable(command[0]), *(translate(arg, mounts) for arg in command[1:])]
    log_file = logs / f"{pod.metadata.namespace}_{pod.metadata.name}.log"
    return Plan(host_command, env, termination, log_file)


def _container_status(container: Any, state: dict[str, Any], ready: bool) -> dict[str, Any]:
    return {
        "name": container.name,
        "image": container.image,
        "imageID": "",
        "ready": ready,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }


def _condition(kind: str, status: bool, reason: str | None = None) -> dict[str, Any]:
    condition = {
        "type": kind,
        "status": "True" if status else "False",
        "lastTransitionTime": _now(),
    }
    if reason:
        condition["reason"] = reason
    return condition


def _patch_status(core: client.CoreV1Api, pod: Any, status: dict[str, Any]) -> None:
    patiently(
        lambda: core.patch_namespaced_pod_status(
            pod.metadata.name, pod.metadata.namespace, {"status": status}
        ),
        f"status of {pod.metadata.namespace}/{pod.metadata.name}",
    )


def run_pod(core: client.CoreV1Api, pod: Any, root: Path, logs: Path) -> None:
    """Run one pod to its end and write its status; whatever breaks fails the pod."""
    try:
        _run_pod(core, pod, root, logs)
    except Exception as error:
        log.exception("running %s/%s failed", pod.metadata.namespace, pod.metadata.name)
        terminated = {
            "exitCode": 128,
            "reason": "Error",
            "message": f"devstack job runner: {error!r}"[:MAX_MESSAGE_BYTES],
            "startedAt": _now(),
            "finishedAt": _now(),
        }
        try:
            _finish(core, pod, pod.spec.containers[0], terminated, succeeded=False)
        except Exception:
            log.exception("could not fail %s", pod.metadata.name)


def _run_pod(core: client.CoreV1Api, pod: Any, root: Path, logs: Path) -> None:
    container = pod.spec.containers[0]
    started = _now()
    work = root / pod.metadata.uid
    work.mkdir(parents=True, exist_ok=True)
    try:
        try:
            job = plan(core, pod, work, logs)
        except (ValueError, client.ApiException, KeyError, AttributeError) as error:
            terminated = {
                "exitCode": 126,
                "reason": "ContainerCannotRun",
                "message": str(error)[:MAX_MESSAGE_BYTES],
                "startedAt": started,
                "finishedAt": _now(),
            }
            _finish(core, pod, container, terminated, succeeded=False)
            return
        _patch_status(
            core,
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "conditions": [_condition("Initialized", True), _condition("Ready", True)],
                "containerStatuses": [
                    _container_status(container, {"running": {"startedAt": started}}, True)
                ],
            },
        )
        log.info("running %s/%s", pod.metadata.namespace, pod.metadata.name)
        with job.log_file.open("wb") as output:
            result = subprocess.run(
                job.command, env=job.env, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        message = job.termination_log.read_bytes()[:MAX_MESSAGE_BYTES].decode(errors="replace")
        # A process ended by a signal exits 128 + the signal as a container runtime reports it
        # (137: SIGKILL, as an OOM kill or a `kill -9`).
        code = 128 - result.returncode if result.returncode < 0 else result.returncode
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else ("OOMKilled" if code == 137 else "Error"),
            "message": message,
            "startedAt": started,
            "finishedAt": _now(),
        }
        _finish(core, pod, container, terminated, succeeded=code == 0)
        log.info("%s/%s exited %d", pod.metadata.namespace, pod.metadata.name, code)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _finish(
    core: client.CoreV1Api, pod: Any, container: Any, terminated: dict[str, Any], succeeded: bool
) -> None:
    _patch_status(
        core,
        pod,
        {
            "phase": "Succeeded" if succeeded else "Failed",
            "conditions": [
                _condition("Initialized", True),
                _condition("Ready", False, "PodCompleted" if succeeded else "PodFailed"),
            ],
            "containerStatuses": [_container_status(container, {"terminated": terminated}, False)],
        },
    )


def _runnable(pod: Any) -> bool:
    status = pod.status
    owners = pod.metadata.owner_references or []
    return (
        any(owner.kind == "Job" for owner in owners)  # a Deployment's pods are kwok's
        and pod.metadata.deletion_timestamp is None
        and bool(pod.spec.node_name)
        and (status is None or status.phase in (None, "Pending"))
        and not (status and status.container_statuses)
    )


def run(kubeconfig: str, root: Path, logs: Path) -> None:
    """Watch this service's pods forever; run each once, in its own thread."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))
    root.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()

    def consider(pod: Any) -> None:
        if _runnable(pod) and pod.metadata.uid not in taken:
            taken.add(pod.metadata.uid)
            threading.Thread(
                target=run_pod, args=(core, pod, root, logs), daemon=True, name=pod.metadata.name
            ).start()

    while True:
        try:
            listed: Any = core.list_pod_for_all_namespaces(label_selector=SELECTOR)
            (root / READY_FILE).touch()
            for pod in listed.items:
                consider(pod)
            for event in watch.Watch().stream(
                core.list_pod_for_all_namespaces,
                label_selector=SELECTOR,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=30,
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    consider(event["object"])
        except Exception:
            log.exception("job runner loop failed; starting over")
            time.sleep(2)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
