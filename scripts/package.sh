#!/usr/bin/env bash
# `npm run package`: production bundles, a check that the extension bundle has no native module,
# then a .vsix with vsce (artifacts/cloudlet-toolkit.vsix). The daemon/CLI is not in the .vsix: the
# extension runs the `cloudlet` CLI with the system Node (setting -> PATH), so it may use native modules.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${VSIX_OUT:-artifacts/cloudlet-toolkit.vsix}"
mkdir -p "$(dirname "$OUT")"
node scripts/build-extension.mjs --production
[ -f dist/extension.js ] && [ -f dist/webview.js ] || { echo "package: dist/extension.js or dist/webview.js missing" >&2; exit 1; }
node scripts/check-bundle.mjs dist/extension.js
npx --no-install vsce package --no-dependencies --skip-license --allow-missing-repository \
  --baseContentUrl https://example.invalid/cloudlet-toolkit --baseImagesUrl https://example.invalid/cloudlet-toolkit \
  --out "$OUT" </dev/null
echo "package: $OUT ($(stat -c %s "$OUT") bytes)"
