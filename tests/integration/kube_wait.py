"""Waiting on Kubernetes objects by watching them, never by sleeping between reads."""

from collections.abc import Callable
from typing import Any

from kubernetes import watch


def watch_until(
    list_function: Callable[..., Any],
    namespace: str,
    condition: Callable[[Any], bool],
    *,
    timeout_seconds: int = 120,
    **selectors: str,
) -> Any:
    """Watch objects listed by `list_function` until one satisfies `condition`; return it.

    A watch without a resourceVersion first replays every existing object as ADDED, so an
    object that already satisfies the condition is found at once.
    """
    stream = watch.Watch()
    last: Any = None
    for event in stream.stream(
        list_function, namespace, timeout_seconds=timeout_seconds, **selectors
    ):
        last = event["object"]
        if event["type"] != "DELETED" and condition(last):
            stream.stop()
            return last
    raise TimeoutError(f"no object met the condition within {timeout_seconds} s; last seen: {last}")
