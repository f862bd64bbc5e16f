#!/usr/bin/env bash
# `npm run package [-- vsix|cli]`: in artifacts/ (or $PACKAGE_DIR),
#  - cloudlet-toolkit-X.Y.Z.vsix: the extension (production bundles, checked to be pure JS, vsce);
#    the daemon is not in it: the extension runs the `cloudlet` CLI with the system Node, so the CLI may
#    use native modules;
#  - cloudlet-toolkit-X.Y.Z.tgz: that CLI and daemon for `npm install -g FILE` (scripts/pack-cli.mjs).
# VSIX_OUT names the .vsix file instead (the UI tests' copy).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
dir="${PACKAGE_DIR:-artifacts}"
version=$(node -p "require('./package.json').version")
mkdir -p "$dir"
if [ "$what" = all ] || [ "$what" = vsix ]; then
  OUT="${VSIX_OUT:-$dir/cloudlet-toolkit-$version.vsix}"
  mkdir -p "$(dirname "$OUT")"
  node scripts/build-extension.mjs --production
  [ -f dist/extension.js ] && [ -f dist/webview.js ] || { echo "package: dist/extension.js or dist/webview.js missing" >&2; exit 1; }
  node scripts/check-bundle.mjs dist/extension.js
  npx --no-install vsce package --no-dependencies --skip-license --allow-missing-repository \
    --baseContentUrl https://example.invalid/cloudlet-toolkit --baseImagesUrl https://example.invalid/cloudlet-toolkit \
    --out "$OUT" </dev/null
  echo "package: $OUT ($(stat -c %s "$OUT") bytes)"
fi
if [ "$what" = all ] || [ "$what" = cli ]; then
  node scripts/pack-cli.mjs "$dir"
  echo "package: $dir/cloudlet-toolkit-$version.tgz ($(stat -c %s "$dir/cloudlet-toolkit-$version.tgz") bytes)"
fi
