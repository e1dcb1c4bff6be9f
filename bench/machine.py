"""Where the figures come from: a results file names the machine it was measured on, so a
page quoting it can say so (and a test can check that it does)."""

import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Python, system, CPU count and memory of this machine."""
    cpus = len(
        [
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("processor")
        ]
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "cpus": cpus,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
    }
