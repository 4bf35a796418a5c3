#!/usr/bin/env bash
# Set-up command 2: create the environment, install and start-able services the tests need
# (local STAC API / HTTP / S3 servers, single-node Slurm), and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
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
