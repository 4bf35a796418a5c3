#!/usr/bin/env bash
# Set-up command 2: create the environment, install and start-able services the tests need
# (local STAC API / HTTP / S3 servers, single-node Slurm), lint with ruff, and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# Lint first (seconds): the rules the code follows, pinned ruff from the test extra.
echo "== ruff check eocube tests benchmarks (rules: pyproject.toml [tool.ruff])"
if ! .venv/bin/ruff check eocube tests benchmarks; then
  echo "ruff check failed: fix the findings above (ruff check --fix fixes the ones marked [*]), or add a noqa with a reason" >&2
  exit 1
fi
for installer in scripts/services/install.sh scripts/slurm/install.sh; do
  if [[ -f $installer ]]; then
    echo "== $installer"
    bash "$installer"
  fi
done
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [[ $status == 5 ]]; then
  echo "pytest collected no tests: that is a failure for this project" >&2
  exit 1
fi
exit $status
