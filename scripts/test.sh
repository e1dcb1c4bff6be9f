#!/usr/bin/env bash
# Sets up a machine, starts the local stack, and runs every check CI runs:
# ruff, ruff format, mypy --strict, import contracts, then pytest (arguments go to pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh
bin=.venv/bin

# Starts what is built and builds the rest in the background, in the order the tests need it
# (a new machine's Go builds take about a quarter of an hour): the checks and the tests that
# need none of it run meanwhile, those that do come later and wait for their build.
"$bin/python" -m devstack up --defer

echo "== ruff check" && "$bin/ruff" check .
echo "== ruff format --check" && "$bin/ruff" format --check .
echo "== mypy --strict" && "$bin/mypy"
echo "== import contracts" && "$bin/lint-imports"

echo "== pytest"
status=0
"$bin/pytest" "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure here, not a pass" >&2
  exit 1
fi
exit "$status"
