"""Where a no-op command's CPU time goes in the consumer (issue 18): by thread, by component
(broker I/O, store, parsing, telemetry, the handler, the runtime's bookkeeping) and by function.
Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.profile [--commands N] [--store sqlite|postgresql|both]
        [--prefetch P] [--batch-size B] [--json PATH]

Per store, N no-op provisions are served twice as `bench.overhead` serves them (one in-process
consumer, 4 workers per queue, prefetch 100 unless told): once plain, for each thread's CPU
clock, and once under yappi for components and functions. yappi, not cProfile: cProfile sees
only the thread that started it, and the consumer works in its I/O thread, its outbox relay
and its handler workers; yappi follows every thread on the CPU clock.

yappi counts every call, C functions too, so the profiled pass is several times slower and
code of many small calls looks dearer than it is. (b) and (c) show what it measured and an
estimate without it: the profiler's cost per call (the two passes' difference in CPU over the
calls it counted) is taken from each function's own time (bench/attribution.py), and the rest
scaled to the plain pass's CPU. The benchmark's main thread, which watches the observing queue,
is not the consumer's and is left out of (b) and (c). Garbage collection is counted apart in (a)
and, inside the profile, in whatever function allocated when it began: a function in (c) much
dearer per call than its neighbours may just have held a full collection.
"""

import argparse
import gc
import json
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yappi
from pydantic import SecretStr

from bench.attribution import ORDER, Cost, Function, call_graph, callee_part, shares
from bench.overhead import PROVISION, SETTINGS, no_op
from bench.stack import (
    depth_of,
    observer,
    postgres_database,
    provisions,
    publish,
    serving,
    vhost,
)
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import declare_on_broker
from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings

ROLES = ("consumer", "outbox relay", "handlers", "parking", "other")
CONSUMER = "consumer, all threads"
BENCH = "bench (main thread)"
PROCESS = "process (ended too)"
COLLECTING = "of which collecting garbage"
CALLED = {
    "broker I/O": "pika",
    "store": "sqlalchemy, psycopg, sqlite3, store/",
    "parsing": "pydantic, messages/",
    "telemetry": "opentelemetry, telemetry/",
    "handler": "the no-op, handlers/",
    "runtime": "consumers/",
    "rest": "no caller of ours: thread pools, queues",
}


def role_of(thread: str) -> str:
    """The part of the consumer a thread plays, by its name."""
    if thread == "MainThread":
        return BENCH
    if thread.startswith("handler-"):
        return "handlers"
    roles = {"consumer": "consumer", "outbox-relay": "outbox relay", "parking": "parking"}
    return roles.get(thread, "other")


def _clocks() -> dict[tuple[int, int | None], tuple[str, float]]:
    """Each live thread's CPU clock, by (ident, native id): its name and seconds."""
    clocks = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # it ended meanwhile
            continue
        clocks[(thread.ident, thread.native_id)] = (thread.name, clock)
    return clocks


@contextmanager
def _collecting() -> Iterator[list[float]]:
    """CPU seconds any thread spends collecting garbage meanwhile (in [0]): a collection
    counts in the own time of whatever function allocated when it began."""
    spent = [0.0]
    began: dict[int, float] = {}

    def collection(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            began[threading.get_ident()] = time.thread_time()
        elif (start := began.pop(threading.get_ident(), None)) is not None:
            spent[0] += time.thread_time() - start

    gc.callbacks.append(collection)
    try:
        yield spent
    finally:
        gc.callbacks.remove(collection)


@dataclass
class Run:
    """One pass: how long it took, and the CPU seconds of each role and of the process."""

    seconds: float
    threads: dict[str, float]
    counts: dict[str, int]
    process: float
    collecting: float
    functions: dict[str, Function]
    """The consumer's threads' functions, when profiled."""


def serve(store_url: str, count: int, settings: ConsumerSettings, profiled: bool) -> Run:
    """Serve `count` no-op provisions as bench.overhead does; under yappi if `profiled`."""
    engine = create_engine(StoreSettings(url=SecretStr(store_url)))
    upgrade(engine)
    with vhost("bench-profile") as (_name, amqp_url):
        declare_on_broker(AmqpSettings(url=SecretStr(amqp_url)), settings)
        events = observer(amqp_url)
        publish(amqp_url, provisions(count, "b"))
        before, process = _clocks(), time.process_time()
        if profiled:
            yappi.clear_stats()
            yappi.set_clock_type("cpu")
            yappi.start(builtins=True)
        started = time.perf_counter()
        with (
            _collecting() as collecting,
            depth_of(amqp_url, events) as answered,
            serving(amqp_url, engine, {PROVISION: no_op}, settings),
        ):
            try:
                while answered() < count:
                    time.sleep(0.02)
            finally:
                if profiled:
                    yappi.stop()
            took = time.perf_counter() - started
            after, process = _clocks(), time.process_time() - process  # threads still alive
    engine.dispose()
    threads: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for key, (name, clock) in after.items():
        threads[role_of(name)] += clock - before.get(key, (name, 0.0))[1]
        counts[role_of(name)] += 1
    functions = {}
    if profiled:
        names = {ident: name for (ident, _), (name, _) in after.items()}
        consumer = [
            int(stat.id)
            for stat in yappi.get_thread_stats()
            if role_of(names.get(int(stat.tid), "")) != BENCH
        ]
        functions = call_graph(consumer)
        yappi.clear_stats()
    return Run(took, threads, counts, process, collecting[0], functions)


@dataclass
class Profile:
    """What one store's two passes tell, in CPU milliseconds per command."""

    store: str
    commands: int
    per_second: float
    profiled_per_second: float
    cost_per_call_us: float
    threads: dict[str, dict[str, float]]
    """Role -> its threads, and CPU plain and profiled."""
    components: dict[str, dict[str, float]]
    """Component -> CPU as profiled, and as estimated unprofiled."""
    functions: list[dict[str, Any]]
    """The 15 dearest by own time, estimated unprofiled."""


def profile(
    store: str, store_url: str, count: int, settings: ConsumerSettings, callee: float
) -> Profile:
    """A plain and a profiled pass on this store (`callee`: what `callee_part` measured)."""
    plain = serve(store_url, count, settings, profiled=False)
    profiled = serve(store_url, count, settings, profiled=True)
    ms = 1000 / count
    threads = {
        role: {
            "threads": plain.counts.get(role, 0),
            "plain": plain.threads.get(role, 0.0) * ms,
            "profiled": profiled.threads.get(role, 0.0) * ms,
        }
        for role in (*ROLES, BENCH)
    }
    columns = ("threads", "plain", "profiled")
    threads[CONSUMER] = {c: sum(threads[role][c] for role in ROLES) for c in columns}
    for row, plain_seconds, profiled_seconds in (
        (PROCESS, plain.process, profiled.process),
        (COLLECTING, plain.collecting, profiled.collecting),
    ):
        threads[row] = {
            "threads": 0,
            "plain": plain_seconds * ms,
            "profiled": profiled_seconds * ms,
        }

    functions = profiled.functions
    added = (threads[CONSUMER]["profiled"] - threads[CONSUMER]["plain"]) / ms
    per_call = max(added, 0.0) / max(sum(f.calls for f in functions.values()), 1)
    cost = Cost(callee * per_call, (1 - callee) * per_call)
    estimated = {key: cost.unprofiled(function) for key, function in functions.items()}
    # Taking a mean cost from every call leaves too much in some functions and clips others
    # at 0; what is left is scaled to what the consumer's threads spent unprofiled.
    scale = threads[CONSUMER]["plain"] / ms / max(sum(estimated.values()), 1e-9)
    parts = shares(functions)
    components = {c: {"profiled": 0.0, "estimated": 0.0} for c in ORDER}
    for key, function in functions.items():
        for component, part in parts[key].items():
            components[component]["profiled"] += function.own * part * ms
            components[component]["estimated"] += estimated[key] * scale * part * ms
    top = sorted(functions, key=lambda key: estimated[key], reverse=True)[:15]
    return Profile(
        store,
        count,
        count / plain.seconds,
        count / profiled.seconds,
        per_call * 1e6,
        threads,
        components,
        [
            {
                "function": functions[key].name,
                "estimated": estimated[key] * scale * ms,
                "profiled": functions[key].own * ms,
                "calls": functions[key].calls / count,
                "component": max(parts[key].items(), key=lambda item: item[1])[0],
            }
            for key in top
        ],
    )


def report(found: Profile) -> None:
    """Print one store's tables."""
    print(
        f"\n== {found.store}: {found.commands} no-op provisions, {found.per_second:.0f} cmd/s "
        f"plain, {found.profiled_per_second:.0f} cmd/s profiled"
    )
    print("(a) CPU ms per command by thread")
    print(f"    {'role':<24} {'threads':>7} {'plain':>7} {'profiled':>9}")
    for role in (*ROLES, CONSUMER, BENCH, PROCESS, COLLECTING):
        row = found.threads[role]
        count = f"{row['threads']:.0f}" if role in (*ROLES, CONSUMER, BENCH) else ""
        print(f"    {role:<24} {count:>7} {row['plain']:>7.2f} {row['profiled']:>9.2f}")
    print(
        "(b) CPU ms per command by component, consumer threads: as profiled, and estimated "
        f"without the profiler ({found.cost_per_call_us:.2f} us a call)"
    )
    print(f"    {'component':<11} {'profiled':>8} {'share':>6} {'estimated':>9} {'share':>6}")
    columns = ("profiled", "estimated")
    total = {c: sum(row[c] for row in found.components.values()) or 1e-9 for c in columns}
    for component, row in [*found.components.items(), ("total", total)]:
        print(
            f"    {component:<11} {row['profiled']:>8.2f} "
            f"{100 * row['profiled'] / total['profiled']:>5.1f}% {row['estimated']:>9.2f} "
            f"{100 * row['estimated'] / total['estimated']:>5.1f}%  {CALLED.get(component, '')}"
        )
    print("(c) top 15 functions by own time, estimated without the profiler (ms per command)")
    print(f"    {'estim.':>6} {'prof.':>6} {'calls':>6}  {'component':<10} function")
    for top in found.functions:
        print(
            f"    {top['estimated']:>6.3f} {top['profiled']:>6.3f} {top['calls']:>6.1f}  "
            f"{top['component']:<10} {top['function'][:90]}"
        )


def main() -> None:
    """Profile the stores asked for, print each, and write JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=SETTINGS.batch_size)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    arguments = parser.parse_args()
    settings = SETTINGS.model_copy(
        update={"prefetch": arguments.prefetch, "batch_size": arguments.batch_size}
    )
    print(
        f"one consumer: {settings.workers} workers per queue, prefetch {settings.prefetch}, "
        f"batches of up to {settings.batch_size}; CPU ms per command"
    )
    callee = callee_part()
    found = []
    if arguments.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as state:
            url = f"sqlite:///{Path(state) / 'state.db'}"
            found.append(profile("sqlite", url, arguments.commands, settings, callee))
            report(found[-1])
    if arguments.store in ("postgresql", "both"):
        with postgres_database("bench_profile") as url:
            found.append(profile("postgresql", url, arguments.commands, settings, callee))
            report(found[-1])
    if arguments.json is not None:
        arguments.json.write_text(json.dumps([asdict(f) for f in found], indent=2) + "\n")


if __name__ == "__main__":
    main()
