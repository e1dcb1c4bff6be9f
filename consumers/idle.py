"""Keeps a connection alive until SIGTERM or SIGINT.

A placeholder main loop: the consumer proves it is connected and ready; processing commands
arrives with the consumer runtime (issue 4/10). It services heartbeats so the broker keeps it.
"""

import signal
import threading
from collections.abc import Callable
from types import FrameType

import pika


def serve_until_signalled(
    connection: pika.BlockingConnection,
    on_ready: Callable[[], None],
    tick_seconds: float = 1.0,
) -> str:
    """Process connection events until a stop signal arrives; return the signal's name.

    `on_ready` runs once the signal handlers are in place, so a stop request that follows the
    readiness report is always a clean shutdown.
    """
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        on_ready()
        while not stop.is_set():
            connection.process_data_events(time_limit=tick_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if connection.is_open:
            connection.close()
    return received[0]
