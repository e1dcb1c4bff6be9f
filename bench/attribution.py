"""Who is answerable for a profiled function's time: yappi's statistics of some threads merged
into a call graph, each function's own time given to a component of the service (bench.profile).

A function's own time goes to the component of its file; a C function's, or one of a file of
no component (the standard library's), to its callers', walking outward until a file of a
component. The graph keeps one level of callers, so beyond the first the time is split in
proportion to the time spent under each caller; what reaches a thread's root unclaimed is
"rest".

yappi counts every call, which costs about as much as a small Python function: a profile
inflates code of many small calls most. `Cost` takes that out again, estimating each
function's own time as it would be unprofiled.
"""

import sysconfig
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yappi

ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
COMPONENTS = {
    "pika": "broker I/O",
    "sqlalchemy": "store",
    "psycopg": "store",
    "psycopg_binary": "store",
    "sqlite3": "store",
    "store": "store",
    "pydantic": "parsing",
    "pydantic_core": "parsing",
    "email_validator": "parsing",
    "messages": "parsing",
    "opentelemetry": "telemetry",
    "telemetry": "telemetry",
    "handlers": "handler",
    "bench/overhead.py": "handler",
    "consumers": "runtime",
}
"""A file's path below the checkout, site-packages or the standard library, or its first
part -> its component."""
ORDER = ("broker I/O", "store", "parsing", "telemetry", "handler", "runtime", "rest")
REST = "rest"


def place(module: str) -> str:
    """A file's path, short: below site-packages, the checkout or the standard library."""
    path = Path(module)
    parts = path.parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    for base in (ROOT, STDLIB):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return module


def component_of(module: str) -> str | None:
    """The component of a Python file; None for a file of none."""
    where = place(module)
    return COMPONENTS.get(where) or COMPONENTS.get(where.split("/", 1)[0])


@dataclass
class Function:
    """One function's totals over the threads profiled (seconds)."""

    name: str
    component: str | None
    """Its file's component; None for a C function or a file of none."""
    own: float = 0.0
    total: float = 0.0
    calls: int = 0
    made: int = 0
    """Calls it made (to functions the profiler saw)."""
    callers: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Caller's key -> time spent in this function under it."""


def call_graph(contexts: list[int]) -> dict[str, Function]:
    """yappi's statistics of these threads (its context ids), merged by function."""
    functions: dict[str, Function] = {}

    def function(stat: Any) -> Function:
        key = str(stat.full_name)
        if key not in functions:
            if stat.builtin:
                functions[key] = Function(key, None)
            else:
                module = str(stat.module)
                name = f"{place(module)}:{stat.lineno} {stat.name}"
                functions[key] = Function(name, component_of(module))
        return functions[key]

    for context in contexts:
        for stat in yappi.get_func_stats(filter={"ctx_id": context}):
            found = function(stat)
            found.own += float(stat.tsub)
            found.total += float(stat.ttot)
            found.calls += int(stat.ncall)
            for child in stat.children:
                function(child).callers[str(stat.full_name)] += float(child.ttot)
                found.made += int(child.ncall)
    return functions


def shares(functions: dict[str, Function]) -> dict[str, dict[str, float]]:
    """Per function, the part of its own time each component is answerable for."""
    found: dict[str, dict[str, float]] = {}

    def share(key: str, visiting: set[str]) -> dict[str, float]:
        function = functions[key]
        if function.component is not None:
            return {function.component: 1.0}
        if key in found:
            return found[key]
        if key in visiting:
            return {}  # a cycle: what it carries comes in through its other callers
        visiting.add(key)
        callers = {c: t for c, t in function.callers.items() if c != key and c in functions}
        weights: dict[str, float] = defaultdict(float)
        weights[REST] = max(function.total - sum(callers.values()), 0.0)  # called at the root
        for caller, spent in callers.items():
            for component, part in share(caller, visiting).items():
                weights[component] += spent * part
        visiting.discard(key)
        weight = sum(weights.values())
        found[key] = {c: w / weight for c, w in weights.items()} if weight else {REST: 1.0}
        return found[key]

    return {key: share(key, set()) for key in functions}


@dataclass(frozen=True)
class Cost:
    """What yappi adds to a call (seconds): `callee` to the called function's own time,
    `caller` to the caller's."""

    callee: float
    caller: float

    def unprofiled(self, function: Function) -> float:
        """An estimate of the function's own time had it run unprofiled."""
        return max(function.own - self.callee * function.calls - self.caller * function.made, 0)


def callee_part(calls: int = 100_000) -> float:
    """Of what yappi adds to a call, the part it counts in the called function's own time
    (about half; the rest lands in the caller's), measured on empty calls in this thread."""

    def empty() -> None:
        pass

    def calling() -> None:
        for _ in range(calls):
            empty()

    started = time.thread_time()
    calling()
    plain = time.thread_time() - started
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=False)
    calling()
    yappi.stop()
    own = {str(stat.name): float(stat.tsub) for stat in yappi.get_func_stats()}
    yappi.clear_stats()
    callee, caller = own["empty"], max(own["calling"] - plain, 0.0)
    return callee / (callee + caller)
