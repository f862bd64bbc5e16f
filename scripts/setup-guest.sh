#!/usr/bin/env bash
# Builds the guests and the cached bases that integration tests, benchmarks and the demo share,
# each kept when its inputs did not change (idempotent):
#   the tiny test guest (Debian kernel via apt-get download + busybox initramfs + ext4 disk) in
#   .cache/guest/ and its base in .cache/test-base/;
#   the Debian 12 guest (debootstrap bookworm + kernel, systemd, guest agent; needs root) in
#   .cache/debian/ and its base in .cache/debian-base/ (first time: several minutes; the benchmarks
#   measure on it), and the same with python3 installed (`--package python3`) in
#   .cache/debian-py3/ (the Debian flow tests build the Flask back-end on it);
#   two disk images built from the same packages (MBR, grub, qcow2; one with cloud-init, one
#   without) in .cache/debian/, for the base create --image tests.
# Called by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setup-guest: test guest"
node --import tsx sandbox/cli/main.ts guest build
echo "setup-guest: test base (cached for integration tests)"
node --import tsx -e 'require("./test/integration/fixtures/testBase").ensureTestBase().then((b) => console.log(`test base ${b.baseId} in ${b.home}`)).catch((e) => { console.error(e); process.exit(1); })'
echo "setup-guest: Debian 12 base (cached for integration tests and benchmarks)"
node --import tsx -e 'require("./test/integration/fixtures/testBase").ensureDebianBase().then((b) => console.log(`Debian base ${b.baseId} in ${b.home}`)).catch((e) => { console.error(e); process.exit(1); })'
echo "setup-guest: Debian 12 base with python3 (the Debian flow tests), and the Flask .deb files they copy in"
node --import tsx -e 'const { flaskWorkspace } = require("./test/integration/fixtures/flaskBackend"); const { ensureDebianBase } = require("./test/integration/fixtures/testBase"); const fs = require("fs"), os = require("os"), path = require("path");
(async () => { const b = await ensureDebianBase("python3"); console.log(`Debian base with python3 ${b.baseId} in ${b.home}`); const d = fs.mkdtempSync(path.join(os.tmpdir(), "cl-flask-")); try { await flaskWorkspace(d); } finally { fs.rmSync(d, { recursive: true, force: true }); } })().catch((e) => { console.error(e); process.exit(1); })'
echo "setup-guest: cloud images built from Debian packages (the base create --image tests import them like downloaded ones)"
node --import tsx -e 'const { ensureCloudImage } = require("./test/integration/fixtures/cloudImage"); (async () => { for (const f of ["cloud-image", "bare-image"]) console.log(`${f}: ${(await ensureCloudImage(f)).image}`); })().catch((e) => { console.error(e); process.exit(1); })'
