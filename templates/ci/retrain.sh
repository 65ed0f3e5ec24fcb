#!/usr/bin/env bash
# Retrain a notebook on new data and release the new model in shadow beside the live one.
#
#   retrain.sh NOTEBOOK PARAMETER VALUE LIVE_TAG [--min METRIC=VALUE]...
#              [--promote-if RULES [--after N]] [--junit FILE] [--store DIR]
#
# A CI job (templates/ci/retrain.yml) or `python -m mlnb.alert_relay --run` runs it when a
# drift or accuracy alert comes in (the alert, when there is one, is in $MLNB_ALERT):
#   1. run      mlnb run NOTEBOOK -p PARAMETER VALUE        the retraining run
#   2. check    the run's metrics against the --min floors,  JUnit XML in --junit FILE
#               judged by mlnb check's own rules              (default mlnb-junit.xml)
#   3. build    mlnb build NOTEBOOK --run RUN --json         the new Bento; refused when it
#                                                             holds the live model (nothing
#                                                             retrained: the same data and code)
#   4. release  mlnb release LIVE_TAG --shadow NEW [--promote-if RULES --after N] --json
# Progress goes to stderr; the release's tag is the last line of stdout (serve it with
# `mlnb serve TAG`). Under GitHub Actions the run, bento, release and release_dir are also
# written to $GITHUB_OUTPUT. Exit status: 0 released, 1 a step failed (named on stderr),
# 2 a usage error, 3 nothing retrained. $MLNB_PYTHON picks the Python that has mlnb
# (default python3).
set -euo pipefail

PY="${MLNB_PYTHON:-python3}"
say() { printf 'retrain: %s\n' "$*" >&2; }
usage() {
  sed -n '3,4p' "$0" | sed 's/^# \{0,1\}//' >&2
  say "$1"
  exit 2
}

[ "$#" -ge 4 ] || usage "needs NOTEBOOK PARAMETER VALUE LIVE_TAG (got $# arguments)"
notebook=$1 parameter=$2 value=$3 live=$4
shift 4
floors=() promote=() store=() junit=mlnb-junit.xml
while [ "$#" -gt 0 ]; do
  case $1 in
    --min) [ "$#" -ge 2 ] || usage "--min needs METRIC=VALUE"; floors+=("$2"); shift 2 ;;
    --promote-if) [ "$#" -ge 2 ] || usage "--promote-if needs RULES"; promote+=(--promote-if "$2"); shift 2 ;;
    --after) [ "$#" -ge 2 ] || usage "--after needs N"; promote+=(--after "$2"); shift 2 ;;
    --junit) [ "$#" -ge 2 ] || usage "--junit needs FILE"; junit=$2; shift 2 ;;
    --store) [ "$#" -ge 2 ] || usage "--store needs DIR"; store=(--store "$2"); shift 2 ;;
    *) usage "unknown option $1" ;;
  esac
done
[ -f "$notebook" ] || usage "no notebook $notebook"
case $live in *:*) ;; *) usage "LIVE_TAG must be a Bento tag NAME:VERSION, not $live" ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { # step number, name, what went wrong
  say "step $1/4 ($2) failed: $3"
  exit 1
}
field() { # file, key: one field of a JSON object mlnb printed
  "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
# The live Bento's models, read before anything runs (a CI runner may not have it).
if ! "$PY" - "$live" >"$work/live-models" <<'EOF'; then
import sys

import bentoml
from bentoml.exceptions import BentoMLException

try:
    info = bentoml.bentos.get(sys.argv[1]).info
except (BentoMLException, ValueError) as exc:
    sys.exit(f"retrain: the live Bento {sys.argv[1]} is not in the BentoML store: {exc}")
for tag in {str(m.tag) for m in info.models} | {
    str(m.tag) for service in info.services for m in service.models
}:
    print(tag)
EOF
  say "fix: pass the live tag the alert names, or bentoml import the live Bento first"
  exit 2
fi
if [ "${MLNB_ALERT:-null}" != null ]; then  # (a workflow started by hand has none)
  say "alert: $(printf '%s' "$MLNB_ALERT" | head -c 300)"
fi

say "step 1/4 (run): mlnb run $notebook -p $parameter $value"
if ! "$PY" -m mlnb run "$notebook" -p "$parameter" "$value" --json ${store[@]+"${store[@]}"} >"$work/run.json"; then
  why=$("$PY" -c 'import json, sys
from mlnb.cli.run import failure_message
print(failure_message(json.load(open(sys.argv[1]))))' "$work/run.json" 2>/dev/null) ||
    why="mlnb run $notebook -p $parameter $value did not succeed (its message is above)"
  fail 1 run "$why"
fi
run_id=$(field "$work/run.json" run_id) || fail 1 run "mlnb run printed no run record"

# `mlnb check NOTEBOOK` runs the notebook with its default parameters, not the new data: the
# retraining run is judged here by mlnb check's own rules (mlnb.check), with its JUnit XML.
say "step 2/4 (check): run $run_id against ${floors[*]:-no floors}"
if ! "$PY" - "$notebook" "$work/run.json" "$junit" ${floors[@]+"${floors[@]}"} <<'EOF'; then
import json
import sys

from mlnb.check import judge, junit_xml, parse_floor, unused_floors
from mlnb.errors import MlnbError

notebook, record_file, junit, *texts = sys.argv[1:]
try:
    floors = [parse_floor(text) for text in texts]
except MlnbError as exc:
    sys.exit(f"retrain: {exc}")
with open(record_file, encoding="utf-8") as handle:
    verdict = judge(notebook, json.load(handle), floors)
with open(junit, "w", encoding="utf-8") as handle:
    handle.write(junit_xml([verdict]))
for case in verdict.cases:
    print(f"retrain:   {case.outcome:7} {case.name}: {case.message}", file=sys.stderr)
missing = unused_floors(floors, [verdict])
if missing:
    sys.exit(f"retrain: the run records no metric {', '.join(f.metric for f in missing)}")
sys.exit(0 if verdict.passed else 1)
EOF
  fail 2 check "run $run_id does not pass ${floors[*]:-its checks} (JUnit XML in $junit)"
fi

say "step 3/4 (build): mlnb build $notebook --run $run_id"
if ! "$PY" -m mlnb build "$notebook" --run "$run_id" --json ${store[@]+"${store[@]}"} >"$work/build.json"; then
  fail 3 build "mlnb build $notebook --run $run_id failed (its message is above)"
fi
bento=$(field "$work/build.json" bento) || fail 3 build "mlnb build printed no Bento tag"
model=$(field "$work/build.json" model)
# A new run of the same data and code trains the same model, in a Bento of another version.
if [ "$bento" = "$live" ] || grep -qxF "$model" "$work/live-models"; then
  say "nothing retrained: run $run_id ($parameter=$value) trains the live model $model again"
  exit 3
fi

say "step 4/4 (release): mlnb release $live --shadow $bento ${promote[*]:-}"
if ! "$PY" -m mlnb release "$live" --shadow "$bento" ${promote[@]+"${promote[@]}"} --json ${store[@]+"${store[@]}"} >"$work/release.json"; then
  fail 4 release "mlnb release $live --shadow $bento failed (its message is above)"
fi
release=$(field "$work/release.json" release) || fail 4 release "mlnb release printed no tag"
release_dir=$(field "$work/release.json" build_dir)
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  printf 'run=%s\nbento=%s\nrelease=%s\nrelease_dir=%s\n' \
    "$run_id" "$bento" "$release" "$release_dir" >>"$GITHUB_OUTPUT"
fi
say "released $release: $live answers, $bento in shadow (folder $release_dir)"
say "serve it: mlnb serve $release; compare: mlnb monitor $release"
echo "$release"
