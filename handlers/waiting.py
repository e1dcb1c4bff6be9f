"""The waits of lifecycle operations: a rollout to N ready pods, and a passing health check.

Both wait within the handler budget (watching, or asking over HTTP) and hand over to a
continuation when the budget runs out; both end the command with a precise error once their
own deadline, counted from the first time the operation waited, has passed.
"""

import time
from collections.abc import Callable

from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Continue
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
    step: str,
    replicas: int,
    spec: InstanceSpec,
    platform: Platform,
    cluster: Cluster,
    progress: Progress,
) -> Continue | None:
    """Wait until the Deployment runs `replicas` ready pods of its current template."""
    name, namespace = spec.names.base, platform.namespace
    deadline = platform.kubernetes.ready_deadline_seconds

    def wait(window: float, until: float) -> None:
        cluster.wait_for(DEPLOYMENT, name, rolled_out(replicas), window)
        if replicas == 0:
            # The status counts zero while pods are still terminating: wait for them to go,
            # so nothing writes to the data when a restore or an upgrade follows.
            left = max(progress.window(until), 1.0)
            cluster.wait_none(POD, selector=selector_of(spec), deadline_seconds=left)

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

    return watch_step(step, deadline, progress, wait, expired, ready)


def watch_step(
    step: str,
    deadline: float,
    progress: Progress,
    wait: Callable[[float, float], None],
    expired: Callable[[], PermanentError],
    notes: Callable[[], dict[str, float]] = dict,
) -> Continue | None:
    """A step that waits, by watching, for at most `deadline` seconds from its first try.

    `wait(window, until)` watches for up to `window` seconds (raising WaitTimeoutError);
    `until` is the epoch time the deadline ends. Within the handler budget it waits, then
    hands over to a continuation; once the deadline has passed (a continuation may come late)
    it still takes one last look before failing with `expired()`. `notes()` is recorded with
    the step when it completes.
    """
    if progress.done(step):
        return None
    since = progress.since(step)
    until = since + deadline
    try:
        wait(max(progress.window(until), 1.0), until)
    except WaitTimeoutError:
        pass
    else:
        progress.complete(step, **notes())
        return None
    if time.time() < until:
        return progress.pause(step)
    raise expired()


def health(
    step: str, spec: InstanceSpec, platform: Platform, progress: Progress
) -> Continue | None:
    """Wait until GET <service>/web/health answers 200 with status pass."""
    if progress.done(step):
        return None
    deadline = platform.kubernetes.health_deadline_seconds
    since = progress.since(step)
    window = max(0.0, progress.window(since + deadline))
    url = spec.names.internal_url(platform.namespace)
    result = check_health(
        url,
        platform.resolver,
        request_timeout=min(REQUEST_TIMEOUT_SECONDS, max(window, 1.0)),
        deadline_seconds=window,
    )
    if result.healthy:
        progress.complete(step)
        return None
    if time.time() - since < deadline:
        return progress.pause(step)
    raise PermanentError(
        "unhealthy", f"{url}/web/health did not pass within {deadline:g} s: {result.detail}"
    )
