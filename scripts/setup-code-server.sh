#!/usr/bin/env bash
# Installs code-server 4.100.3 (real VS Code 1.100 in a browser) into .cache/code-server for the UI
# tests (docs/extension.md, test/ui/harness.ts). Idempotent: a marker file makes a second run
# return at once. Non-interactive (CI runs it with no stdin).
# npm 11 blocks dependency install scripts unless approved, so everything is installed with
# --ignore-scripts and the native modules code-server needs are rebuilt by name (an explicit
# `npm rebuild NAME` runs their build), never downloading prebuilt binaries from outside the registry.
#   CODE_SERVER_DIR   install folder (default .cache/code-server)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.100.3
DIR="${CODE_SERVER_DIR:-$PWD/.cache/code-server}"
MARKER="$DIR/.ready-$VERSION"
ENTRY="$DIR/node_modules/code-server/out/node/entry.js"

if [ -f "$MARKER" ] && [ -f "$ENTRY" ]; then
  echo "setup-code-server: cached ($DIR)"
  exit 0
fi

for tool in chromium rg; do
  command -v "$tool" >/dev/null || { echo "setup-code-server: '$tool' missing: apt-get install chromium ripgrep libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev" >&2; exit 1; }
done

export npm_config_yes=true npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
# node-gyp builds against the installed Node's headers (Debian's nodejs ships them), never downloads them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
NPM=(npm --no-audit --no-fund --loglevel=error)
echo "setup-code-server: installing code-server $VERSION into $DIR (about 320 MB, once)"
rm -f "$MARKER"
mkdir -p "$DIR"
[ -f "$DIR/package.json" ] || echo '{ "name": "code-server-cache", "private": true, "version": "0.0.0" }' > "$DIR/package.json"

# 2. the package itself, scripts off
( cd "$DIR" && "${NPM[@]}" install --ignore-scripts "code-server@$VERSION" </dev/null )

# 3. VS Code's own dependencies, native ones rebuilt by name; ripgrep from Debian
VS="$DIR/node_modules/code-server/lib/vscode"
( cd "$VS" && "${NPM[@]}" install --omit=dev --ignore-scripts </dev/null )
( cd "$VS" && "${NPM[@]}" rebuild @parcel/watcher kerberos native-watchdog @vscode/spdlog </dev/null )
if [ -d "$VS/node_modules/@vscode/sqlite3" ]; then ( cd "$VS" && "${NPM[@]}" rebuild @vscode/sqlite3 </dev/null ); fi
( cd "$VS" && "${NPM[@]}" rebuild node-pty </dev/null )
mkdir -p "$VS/node_modules/@vscode/ripgrep/bin"
ln -sf "$(command -v rg)" "$VS/node_modules/@vscode/ripgrep/bin/rg"
ln -sfn node_modules "$VS/node_modules.asar"
( cd "$VS/extensions" && "${NPM[@]}" install --omit=dev --ignore-scripts </dev/null )

# 4. code-server's password hashing module, in the parent project
( cd "$DIR" && "${NPM[@]}" rebuild argon2 </dev/null )

# check the native modules really exist (an approval policy can skip a rebuild silently)
for m in node-pty/build/Release/pty.node @vscode/spdlog/build/Release/spdlog.node native-watchdog/build/Release/watchdog.node; do
  [ -f "$VS/node_modules/$m" ] || { echo "setup-code-server: $m was not built" >&2; exit 1; }
done
ls "$DIR"/node_modules/argon2/lib/binding/*/argon2.node >/dev/null 2>&1 || { echo "setup-code-server: argon2 was not built" >&2; exit 1; }

# 5. smoke check: it starts and answers on loopback
LOG="$(mktemp)"; TMPD="$(mktemp -d)"
node "$ENTRY" --bind-addr 127.0.0.1:0 --auth none --disable-telemetry --disable-update-check \
  --config "$TMPD/config.yaml" --user-data-dir "$TMPD/ud" --extensions-dir "$TMPD/ext" "$TMPD" >"$LOG" 2>&1 &
PID=$!
ok=0
for _ in $(seq 1 60); do
  if grep -q "HTTP server listening" "$LOG"; then ok=1; break; fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.5
done
kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
if [ "$ok" != 1 ]; then cat "$LOG" >&2; rm -rf "$LOG" "$TMPD"; echo "setup-code-server: code-server did not start" >&2; exit 1; fi
rm -rf "$LOG" "$TMPD"
date -u +%FT%TZ > "$MARKER"
echo "setup-code-server: ready"
