"""The waiting steps of lifecycle operations: a rollout to N ready pods, a passing health check.

Each is a `Step` (handlers/steps.py), recorded once its wait is over. A rollout says what it
waits for (handlers/waits.py) and looks once; if that does not hold, the consumer parks the
delivery until the informer shows it (`Wait`), or, where it cannot park, the step watches within
the handler budget; either way it hands over to a continuation when the budget runs out. The
health check asks over HTTP within the budget. Both end the command with a precise error once
their own deadline, counted from the first time the operation waited, has passed.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any

from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.steps import Step, StepOutcome
from handlers.waits import WaitingFor
from k8s.apply import WaitTimeoutError, rolled_out
from k8s.conditions import pod_problems
from k8s.health import check_health
from k8s.kinds import DEPLOYMENT, POD
from k8s.spec import InstanceSpec
from messages.errors import PermanentError
from store.records import READY_AT_KEY

REQUEST_TIMEOUT_SECONDS = 5.0


def selector_of(spec: InstanceSpec) -> str:
    """The label selector of the instance's server pods."""
    return ",".join(f"{key}={value}" for key, value in spec.selector().items())


def rollout(
    step: str, replicas: int, spec: InstanceSpec, platform: Platform, cluster: Cluster
) -> Step:
    """Wait until the Deployment runs `replicas` ready pods of its current template."""
    name, namespace = spec.names.base, platform.namespace
    deadline = platform.kubernetes.ready_deadline_seconds
    waits: list[WaitingFor[Any]] = [
        WaitingFor.state(
            DEPLOYMENT, name, rolled_out(replicas), f"Deployment {name} at {replicas} ready"
        )
    ]
    if replicas == 0:
        # The status counts zero while pods are still terminating: wait for them to go,
        # so nothing writes to the data when a restore or an upgrade follows.
        waits.append(WaitingFor.none_left(POD, spec.selector(), f"no pod of {name}"))

    def expired() -> PermanentError:
        pods = cluster.objects(POD, selector=selector_of(spec))
        if replicas == 0:
            return PermanentError(
                "not_stopped",
                f"Deployment {namespace}/{name} still has pods after {deadline:g} s: "
                f"{pod_problems(pods)}",
            )
        return PermanentError(
            "not_ready",
            f"Deployment {namespace}/{name} did not have {replicas} Ready pod(s) within "
            f"{deadline:g} s: {pod_problems(pods)}",
        )

    def ready() -> dict[str, float]:
        # When the pods were seen Ready: the Ready-to-event latency is measured from here.
        return {READY_AT_KEY: time.time()} if replicas > 0 else {}

    return watch_step(step, deadline, waits, cluster, expired, ready)


def watch_step(
    step: str,
    deadline: float,
    waits: Sequence[WaitingFor[Any]],
    cluster: Cluster,
    expired: Callable[[], PermanentError],
    notes: Callable[[], dict[str, float]] = dict,
) -> Step:
    """A step that waits, in turn, for each of `waits`, for at most `deadline` seconds from its
    first try.

    Each is awaited with `Progress.wait`: one look and a Wait to park (the step then runs again
    from the first when resumed), or a watch within the handler budget; it hands over to a
    continuation when the budget runs out. Once the deadline has passed (a continuation or a
    resumption may come late) it still takes one last look before failing with `expired()`.
    `notes()` is recorded with the step when it completes.
    """

    def run(progress: Progress) -> StepOutcome:
        until = progress.since(step) + deadline
        for waiting in waits:
            try:
                outcome = progress.wait(step, waiting, until)
            except WaitTimeoutError:
                raise expired() from None
            if outcome is not None:
                return outcome
        return notes()

    return Step(step, run)


def health(step: str, spec: InstanceSpec, platform: Platform) -> Step:
    """Wait until GET <service>/web/health answers 200 with status pass."""
    deadline = platform.kubernetes.health_deadline_seconds
    url = spec.names.internal_url(platform.namespace)

    def run(progress: Progress) -> StepOutcome:
        since = progress.since(step)
        window = max(0.0, progress.window(since + deadline))
        result = check_health(
            url,
            platform.resolver,
            request_timeout=min(REQUEST_TIMEOUT_SECONDS, max(window, 1.0)),
            deadline_seconds=window,
        )
        if result.healthy:
            return None
        if time.time() - since < deadline:
            return progress.pause(step)
        raise PermanentError(
            "unhealthy", f"{url}/web/health did not pass within {deadline:g} s: {result.detail}"
        )

    return Step(step, run)
