#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine lacks (run as root), idempotent and cached:
#   apt packages, npm dependencies, the test guest and its base (.cache/guest, .cache/test-base), the
#   Debian 12 base (.cache/debian, .cache/debian-base: built once, several minutes), the fleet tests'
#   Keystone database (.cache/keystone), code-server for UI tests, Node 22 and 24 with better-sqlite3
#   built for each (.cache/node22, .cache/node24: the unit suite runs under them too), ccache and one
#   install of the packaged CLI (.cache/ccache: the install tests' native builds then come from it).
#   --demo      then runs `npm run demo` (the README's first command)
#   --no-ui     skip code-server (UI tests then fail to start)
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0; ui=1
for a in "$@"; do case "$a" in --demo) demo=1;; --no-ui) ui=0;; esac; done

APT_PACKAGES=(
  qemu-system-x86 qemu-utils            # the sandbox hypervisor (TCG fallback when KVM cannot run guests)
  busybox-static cpio e2fsprogs         # the tiny test guest: initramfs + ext4 disk built from Debian packages
  zstd xz-utils xdelta3                 # peers measured by the benchmarks
  docker.io                             # Docker engines that act as edge devices
  docker-registry apache2-utils openssl # the reference OCI registry, htpasswd and TLS for its tests
  skopeo                                # a generic OCI tool reading the overlay artifact (registryOverlay test)
  python3-openstackclient python3-blazarclient  # standard OpenStack clients used against the daemon
  python3-glanceclient python3-novaclient python3-zunclient python3-openstacksdk python3-keystoneauth1  # issue 14's client tests
  python3-keystone uwsgi-core uwsgi-plugin-python3  # a real Keystone (22.x) for the fleet tests
  sqlite3 curl jq
  ccache                         # the install test's native builds (SQLite, zstd) compile once per machine
  debootstrap fdisk grub-pc-bin  # Debian guests from packages; the BIOS-bootable cloud-image test fixture
  chromium libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev ripgrep  # code-server + Playwright
)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
npm run build
bash scripts/node-runtimes.sh install

[ -x scripts/setup-guest.sh ] && bash scripts/setup-guest.sh
# The fleet tests' Keystone database (db_sync, bootstrap, users), made once into .cache/keystone/.
echo "setup: Keystone database for the fleet tests"
node --import tsx -e 'require("./test/integration/fixtures/keystone").keystoneTemplate().then((d) => console.log(`keystone in ${d}`)).catch((e) => { console.error(e); process.exit(1); })'
[ "$ui" = 1 ] && [ -x scripts/setup-code-server.sh ] && bash scripts/setup-code-server.sh
# The packaged CLI installed once into an empty prefix, as the packaging and UI tests do: its native
# modules compile here (minutes) into .cache/ccache, so the tests' installs of later tarballs reuse them.
echo "setup: the packaged CLI, installed once (compiler cache for the install tests)"
node --import tsx -e 'require("./test/integration/fixtures/install").ensureInstalledCli().then((i) => console.log(`installed in ${i.prefix}`)).catch((e) => { console.error(e); process.exit(1); })'

echo "setup: done"
if [ "$demo" = 1 ]; then npm run demo; fi
