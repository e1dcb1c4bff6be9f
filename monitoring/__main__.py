"""Write deploy/monitoring/'s generated files: the PrometheusRule and the dashboard.

    .venv/bin/python -m monitoring [--check]

`--check` writes nothing and exits 1 naming each file that differs from what it would write.
"""

import argparse
import sys
from pathlib import Path

from monitoring import dashboard, rules

DASHBOARD = rules.MONITORING / "dashboard.json"


def generated() -> dict[Path, str]:
    """Each generated file and its content."""
    return {rules.PROMETHEUS_RULE: rules.render(), DASHBOARD: dashboard.render()}


def main(argv: list[str] | None = None) -> int:
    """Write (or check) the files."""
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, content in generated().items():
        current = path.read_text() if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(content)
            print(f"wrote {path}")
    for path in stale:
        print(f"{path} is not what `python -m monitoring` makes: run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
