#!/usr/bin/env bash
# The quality tests (marker `quality`) under 1 and 2 intra-op threads and two CPU instruction sets.
#
#   bash tests/run_portability.sh            # 4 configurations; the spread of every statistic at the end
#
# Each configuration is one pytest run; every statistic's per-seed values land in
# $OUT/quality.jsonl (default portability_output/), and tests/quality_spread.py prints, per
# statistic, its mean and range over seeds in every configuration. `make test` stays one run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-portability_output}
mkdir -p "$OUT"
rm -f "$OUT/quality.jsonl"
status=0
# capability:threads — both thread counts natively, and two older instruction sets.
for config in ${CONFIGS:-native:1 native:2 avx2:1 default:2}; do
  capability=${config%%:*}
  threads=${config##*:}
  echo "== ATEN_CPU_CAPABILITY=$capability, $threads thread(s)"
  env_args=(LU_TEST_THREADS="$threads" LU_QUALITY_LOG="$OUT/quality.jsonl")
  [ "$capability" != native ] && env_args+=(ATEN_CPU_CAPABILITY="$capability")
  env "${env_args[@]}" "$PY" -m pytest -q -p no:cacheprovider -m quality tests || status=1
done
"$PY" tests/quality_spread.py "$OUT/quality.jsonl"
exit $status
