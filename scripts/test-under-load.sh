#!/usr/bin/env bash
# Run the whole suite ROUNDS times in a row while BUSY CPU-bound processes compete for the cores,
# to show that no test depends on timing (issue 13). Stops at the first failing round.
#   bash scripts/test-under-load.sh [ROUNDS=3] [BUSY=1] [-- pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
busy=${2:-1}
shift $(( $# >= 2 ? 2 : $# ))
[[ ${1:-} == "--" ]] && shift

pids=()
cleanup() { ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
for ((i = 0; i < busy; i++)); do
  python3 -c "while True: pass" &
  pids+=($!)
done
echo "== $busy busy process(es) running: ${pids[*]}"

for ((round = 1; round <= rounds; round++)); do
  echo "== round $round of $rounds ($(date -u +%H:%M:%S))"
  bash scripts/test.sh "$@"
done
echo "== $rounds rounds passed under load"
