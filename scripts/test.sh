#!/usr/bin/env bash
# The README's test command (`npm test`): lint + typecheck, unit, integration, then UI tests in real
# VS Code (code-server). Prints one closing line "N passed, N failed" summed over every suite.
# CLOUDLET_TEST_SUITES=unit,integration narrows the run (default: all). node22, node24: the unit suite
# again under that Node (scripts/node-runtimes.sh; in the default run once setup has installed it).
# The Debian base's flow (test/integration/debianFlow.test.ts) and its UI test (test/ui/debian.test.ts)
# are in the default run. debian: the image imports (test/integration/debianImages.test.ts: cold
# firmware boots and cloud-init under TCG, about 50 minutes on 2 cores), not in the default run.
# fleet-ui: the editor against a fleet under the real Keystone (test/ui/fleet*.test.ts); not in the
# default run either (about 3-5 minutes more on 2 cores, past the default run's 30 minutes).
# CLOUDLET_TEST_JOBS (default 2): lint and unit runs at once; CLOUDLET_TEST_SHARDS (default 2):
# integration mocha processes at once (1 and 1: everything one after the other, as before).
set -uo pipefail
cd "$(dirname "$0")/.."
majors=$(bash scripts/node-runtimes.sh majors)
default=lint,unit,integration,ui
for v in $majors; do bash scripts/node-runtimes.sh installed "$v" && default+=",node$v"; done
suites="${CLOUDLET_TEST_SUITES:-$default}"
results=artifacts/test-results
rm -rf "$results"; mkdir -p "$results"
rm -rf artifacts/screenshots   # only this run's screenshots, none left from an earlier one
lint_failed=0

has() { [[ ",$suites," == *",$1,"* ]]; }

# Lint and the unit suite under each Node are independent and CPU-bound: they run two at a time
# (CLOUDLET_TEST_JOBS, default 2: the budget's two cores), each job's output shown whole when it ends.
jobs_dir=$(mktemp -d)
trap 'rm -rf "$jobs_dir"' EXIT
max_jobs=${CLOUDLET_TEST_JOBS:-2}
queued=()
lint_job() {
  # eslint: code rules and route sizes; lint:deps (dependency-cruiser): layer order of sandbox/, no import cycles.
  npx eslint . && npm run --silent lint:deps && npx tsc -p . --noEmit && npx tsc -p webview --noEmit
}
unit_job() { CLOUDLET_TEST_COUNTS=$results/unit.json npx mocha --config test/.mocharc.unit.json "test/unit/**/*.test.ts"; }
node_job() {
  bash scripts/node-runtimes.sh test "$1" "$results/unit-node$1.json"
  # A run that never got to count (runtime missing, crash) is a failure, not silence.
  [ -f "$results/unit-node$1.json" ] || echo '{"passed":0,"failed":1,"skipped":0,"failures":["the unit suite did not run under Node '"$1"'"]}' > "$results/unit-node$1.json"
}
has lint && queued+=("lint|lint and typecheck|lint_job")
has unit && queued+=("unit|unit tests|unit_job")
for v in $majors; do has "node$v" && queued+=("node$v|unit tests under Node $v|node_job $v"); done
show_done() {  # prints every finished job's output once
  for f in "$jobs_dir"/*.rc; do
    [ -e "$f" ] || continue
    local name; name=$(basename "$f" .rc)
    [ -e "$jobs_dir/$name.shown" ] && continue
    echo "== $(cat "$jobs_dir/$name.title") ($(cat "$jobs_dir/$name.secs") s)"
    cat "$jobs_dir/$name.log"
    touch "$jobs_dir/$name.shown"
  done
}
start_job() {  # start_job NAME TITLE CMD...: runs CMD in the background, its output, time and exit code kept
  local name=$1 title=$2; shift 2
  echo "$title" > "$jobs_dir/$name.title"
  ( t0=$SECONDS; "$@" > "$jobs_dir/$name.log" 2>&1; rc=$?; echo $((SECONDS - t0)) > "$jobs_dir/$name.secs"; echo $rc > "$jobs_dir/$name.rc" ) &
}
wait_all() { while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || true; show_done; done; wait; show_done; }
if [ ${#queued[@]} -gt 0 ]; then
  echo "== ${#queued[@]} jobs, $max_jobs at a time: $(printf '%s\n' "${queued[@]}" | cut -d'|' -f2 | paste -sd, | sed 's/,/, /g')"
  for j in "${queued[@]}"; do
    IFS='|' read -r name title cmd <<< "$j"
    while [ "$(jobs -rp | wc -l)" -ge "$max_jobs" ]; do wait -n || true; show_done; done
    # shellcheck disable=SC2086  # cmd is a function name and its arguments
    start_job "$name" "$title" $cmd
  done
  wait_all
  [ -f "$jobs_dir/lint.rc" ] && [ "$(cat "$jobs_dir/lint.rc")" != 0 ] && lint_failed=1
fi
if has integration; then
  # Most of the integration time is waiting (guests booting, leases, timeouts, clients' polls): the files
  # run as CLOUDLET_TEST_SHARDS mocha processes at once (default 2; 1: one process as before), split by
  # scripts/integration-shards.mjs into about equal time; each shard's output shown whole when it ends.
  shards=${CLOUDLET_TEST_SHARDS:-2}
  shard_job() {  # shard_job N FILE...
    local n=$1; shift
    CLOUDLET_TEST_COUNTS=$results/integration-$n.json npx mocha --config test/.mocharc.integration.json "$@"
    local rc=$?
    # A shard that never got to count (crashed) is a failure, not silence.
    [ -f "$results/integration-$n.json" ] || echo '{"passed":0,"failed":1,"skipped":0,"failures":["integration shard '"$n"' did not count (crashed)"]}' > "$results/integration-$n.json"
    return $rc
  }
  mapfile -t shard_files < <(node scripts/integration-shards.mjs "$shards")
  # No shard at all (the split failed): a failure, not a run that quietly tested nothing.
  [ ${#shard_files[@]} -gt 0 ] || echo '{"passed":0,"failed":1,"skipped":0,"failures":["no integration test files to run (scripts/integration-shards.mjs)"]}' > "$results/integration.json"
  echo "== integration tests (real QEMU, registry, Docker engines, daemons): ${#shard_files[@]} shards at once"
  for i in "${!shard_files[@]}"; do
    n=$((i + 1))
    # shellcheck disable=SC2086  # a shard's files, space-separated
    start_job "integration-$n" "integration tests, shard $n/${#shard_files[@]}: $(echo "${shard_files[$i]}" | wc -w) files" shard_job "$n" ${shard_files[$i]}
  done
  wait_all
fi
if has debian; then
  echo "== image imports on Debian guests (cloud-init, raw, vmdk, firmware boots)"
  CLOUDLET_TEST_COUNTS=$results/debian.json npx mocha --config test/.mocharc.integration.json test/integration/debianImages.test.ts
fi
if has ui && [ -f test/.mocharc.ui.json ]; then
  echo "== UI tests (code-server + Playwright)"
  CLOUDLET_TEST_COUNTS=$results/ui.json npx mocha --config test/.mocharc.ui.json --ignore "test/ui/fleet*.test.ts" "test/ui/**/*.test.ts"
fi
if has fleet-ui; then
  echo "== UI tests against a fleet (real Keystone, two cloudlets as regions)"
  CLOUDLET_TEST_COUNTS=$results/fleet-ui.json npx mocha --config test/.mocharc.ui.json "test/ui/fleet*.test.ts"
fi

node -e '
const fs = require("fs"); const dir = process.argv[1];
let p = 0, f = Number(process.argv[2]), s = 0;
for (const name of fs.readdirSync(dir)) {
  const c = JSON.parse(fs.readFileSync(dir + "/" + name, "utf8"));
  p += c.passed; f += c.failed; s += c.skipped;
  for (const x of c.failures) console.log("FAILED " + name.replace(".json", "") + ": " + x);
}
if (Number(process.argv[2])) console.log("FAILED lint/typecheck");
console.log(`${p} passed, ${f} failed` + (s ? `, ${s} skipped` : ""));
process.exit(f ? 1 : 0);
' "$results" "$lint_failed"
