#!/usr/bin/env bash
# `npm run demo`: the end-to-end demo, a thin script over the `cloudlet` CLI. For now: build the
# test guest, create a base VM from it, resume it in a sandbox (no reboot), run a command in it,
# fetch a page from a web server in it through its forwarded loopback port, print the timings.
# Uses its own store (CLOUDLET_HOME, default .cache/demo-home) and removes its sandbox at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLOUDLET_HOME="${CLOUDLET_HOME:-$PWD/.cache/demo-home}"
cloudlet() { node --import tsx sandbox/cli/main.ts "$@"; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(process.argv[1].split(".").reduce((o,k)=>o[k],v))})' "$1"; }

echo "== 1. test guest (Debian kernel + busybox, cached in .cache/guest)"
t0=$(now); cloudlet guest build >/dev/null; t1=$(now)
echo "   ready in $(ms "$t0" "$t1") ms"

echo "== 2. base VM (boot, wait for the agent, pause, save disk + RAM + device state + digests)"
base=$(cloudlet base list --json | json 0.baseId 2>/dev/null || true)
t0=$(now)
if [ -z "$base" ] || [ "$base" = undefined ]; then base=$(cloudlet base create --test-guest --name demo-base); fi
t1=$(now)
echo "   base $base ($(ms "$t0" "$t1") ms)"
cloudlet base show "$base" | sed 's/^/   /' | head -6

echo "== 3. resume it in a sandbox (qcow2 over the base disk, private RAM copy, incoming device state)"
cloudlet sandbox delete demo >/dev/null 2>&1 || true
trap 'cloudlet sandbox delete demo >/dev/null 2>&1 || true' EXIT
t0=$(now); info=$(cloudlet sandbox resume "$base" --name demo --json); t1=$(now)
echo "   resumed in $(ms "$t0" "$t1") ms end to end (QEMU start -> guest running: $(echo "$info" | json resumeMs) ms)"

echo "== 4. run a command in the guest (through the guest agent on virtio-serial)"
t0=$(now); out=$(cloudlet sandbox exec demo -- 'echo "guest $(hostname): uptime $(cut -d" " -f1 /proc/uptime) s, counter $(cat /run/counter)"'); t1=$(now)
echo "   $out  ($(ms "$t0" "$t1") ms)"

echo "== 5. a web server in the guest, on its forwarded 127.0.0.1 port"
port=$(echo "$info" | json ports.0.host)
cloudlet sandbox exec demo -- 'httpd -p 80 -h /www' >/dev/null
echo "   curl http://127.0.0.1:$port/ -> $(curl -s --max-time 20 "http://127.0.0.1:$port/")"

echo "== done. Sandboxes now:"
cloudlet sandbox list | sed 's/^/   /'
