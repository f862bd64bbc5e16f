#!/usr/bin/env bash
# Builds the tiny test guest (Debian kernel via apt-get download + busybox initramfs + ext4 disk)
# into .cache/guest/ (idempotent: a cached guest with the same inputs is kept), then the cached
# test base in .cache/test-base/ that integration tests share. Called by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setup-guest: test guest"
node --import tsx sandbox/cli/main.ts guest build
echo "setup-guest: test base (cached for integration tests)"
node --import tsx -e 'require("./test/integration/fixtures/testBase").ensureTestBase().then((b) => console.log(`test base ${b.baseId} in ${b.home}`)).catch((e) => { console.error(e); process.exit(1); })'
