#!/usr/bin/env bash
# Runs the three experiments at one preset on a machine that is held for a limited time and
# returns only a few small files (a remote CPU or GPU host), one piece per call:
#
#   [DRAIN=<seconds>] scripts/experiments-in-pieces.sh <preset> <seconds> <packs dir> <out dir> [jobs per experiment: ls noise ablations]
#
# 1. unpacks <packs dir>/<experiment>-<preset>.NNN (what the previous call returned), if there,
#    into runs/experiments/<experiment>-<preset>;
# 2. runs length-scaling, noise and ablations at once (default --jobs 5, 5 and 6: 16 workers of one
#    thread, so that at most 16 runs are unfinished when it stops), each stopping cleanly after
#    <seconds> (checkpoints written; the next call continues). With DRAIN, no run starts after
#    DRAIN seconds, so fewer runs are left half-done (each carries its checkpoint and optimizer
#    state, about 1.5 MiB at the cpu shapes) at the cost of idle cores near the end;
# 3. packs each experiment into <out dir>/<experiment>-<preset>.NNN (parts of at most 16 MiB) and
#    writes <out dir>/log-<preset>.txt (all three logs).
#
# Exit status 0 when every experiment finished, 3 when some stopped and need another call.
set -uo pipefail
preset=${1:?preset}; seconds=${2:?seconds}; packs=${3:?packs dir}; out=${4:?out dir}
jobs=("${5:-5}" "${6:-5}" "${7:-6}")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
names=(length-scaling noise ablations)
mkdir -p "$out" runs/experiments
for e in "${names[@]}"; do
  if compgen -G "$packs/$e-$preset.[0-9][0-9][0-9]" > /dev/null; then
    node bin/cubit.mjs experiment unpack "$packs/$e-$preset".[0-9][0-9][0-9] --out "runs/experiments/$e-$preset" || exit 1
  fi
done
pids=()
for i in 0 1 2; do
  e=${names[$i]}
  node bin/cubit.mjs experiment "$e" --preset "$preset" --out "runs/experiments/$e-$preset" \
    --jobs "${jobs[$i]}" --threads 1 --stop-after "$seconds" ${DRAIN:+--no-new-runs-after "$DRAIN"} --no-estimate > "runs/$e-$preset.log" 2>&1 &
  pids+=($!)
done
status=0
for i in 0 1 2; do
  wait "${pids[$i]}"; rc=$?
  echo "${names[$i]}: exit $rc" >> "runs/status-$preset.txt"
  [ "$rc" -eq 0 ] || status=3
done
for e in "${names[@]}"; do
  node bin/cubit.mjs experiment pack "runs/experiments/$e-$preset" --to "$out" --name "$e-$preset" || status=1
done
{ for e in "${names[@]}"; do echo "==== $e"; tail -n 60 "runs/$e-$preset.log"; done; cat "runs/status-$preset.txt"; } > "$out/log-$preset.txt"
rm -f "runs/status-$preset.txt"
exit $status
