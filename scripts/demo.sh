#!/usr/bin/env bash
# `npm run demo`: the end-to-end demo, a thin script over the `cloudlet` CLI: build the guest,
# create a base VM from it, resume it in a sandbox (no reboot), run a command in it, build a
# back-end overlay, synthesize it on a cloudlet daemon, hand it off live to a second one, print the
# timings. `npm run demo` uses the tiny test guest (fast); `npm run demo -- --debian` tells the same
# story on a Debian 12 base built from Debian packages (systemd, 1 GiB, python3; root; the first base
# create boots it for a few minutes under TCG) with a Python Flask back-end installed from .deb files.
# Uses its own store (CLOUDLET_HOME, default .cache/demo-home) and removes its sandbox at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
guest=test
for a in "$@"; do
  case "$a" in
    --debian) guest=debian;;
    *) echo "usage: npm run demo [-- --debian]" >&2; exit 2;;
  esac
done
export CLOUDLET_HOME="${CLOUDLET_HOME:-$PWD/.cache/demo-home}"
cloudlet() { node --import tsx sandbox/cli/main.ts "$@"; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);const x=process.argv[1].split(".").reduce((o,k)=>o[k],v);console.log(typeof x==="object"?JSON.stringify(x):x)})' "$1"; }
# The ID of the local base named $1 (empty when there is none).
base_named() { cloudlet base list --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const b=JSON.parse(s).find(x=>x.name===process.argv[1]);console.log(b?b.baseId:"")})' "$1"; }

if [ "$guest" = debian ]; then
  # python3 in the base: the build then installs Flask's few small packages, not Python (whose
  # install byte-compiles its standard library: minutes under TCG).
  base_name=demo-debian-python3
  guest_title="Debian 12 guest (debootstrap bookworm: kernel, systemd, udev, python3, guest agent; cached stage by stage in .cache/debian)"
  build_guest() { cloudlet guest build --debian bookworm --package python3; }
  create_base() { cloudlet base create --debian bookworm --package python3 --name "$base_name"; }
  guest_cmd='echo "guest $(hostname): $(. /etc/os-release; echo $PRETTY_NAME), systemd $(systemctl is-system-running), uptime $(cut -d" " -f1 /proc/uptime) s"'
  app_port=5000; app_path=/counter
else
  base_name=demo-base
  guest_title="test guest (Debian kernel + busybox, cached in .cache/guest)"
  build_guest() { cloudlet guest build; }
  create_base() { cloudlet base create --test-guest --name "$base_name"; }
  guest_cmd='echo "guest $(hostname): uptime $(cut -d" " -f1 /proc/uptime) s, counter $(cat /run/counter)"'
  app_port=80; app_path=/cgi-bin/counter
fi

echo "== 1. $guest_title"
t0=$(now); build_guest >/dev/null; t1=$(now)
echo "   ready in $(ms "$t0" "$t1") ms"

echo "== 2. base VM (boot, wait for the agent, pause, save disk + RAM + device state + digests)"
base=$(base_named "$base_name")
t0=$(now)
if [ -z "$base" ]; then base=$(create_base); fi
t1=$(now)
echo "   base $base ($(ms "$t0" "$t1") ms)"
cloudlet base show "$base" | sed 's/^/   /' | head -6

echo "== 3. resume it in a sandbox (qcow2 over the base disk, private RAM copy, incoming device state)"
cloudlet sandbox delete demo >/dev/null 2>&1 || true
trap 'cloudlet sandbox delete demo >/dev/null 2>&1 || true' EXIT
t0=$(now); info=$(cloudlet sandbox resume "$base" --name demo --json); t1=$(now)
echo "   resumed in $(ms "$t0" "$t1") ms end to end (QEMU start -> guest running: $(echo "$info" | json resumeMs) ms)"

echo "== 4. run a command in the guest (through the guest agent on virtio-serial)"
t0=$(now); out=$(cloudlet sandbox exec demo -- "$guest_cmd"); t1=$(now)
echo "   $out  ($(ms "$t0" "$t1") ms)"

if [ "$guest" = test ]; then
  echo "== 5. a web server in the guest, on its forwarded 127.0.0.1 port"
  port=$(echo "$info" | json ports.0.host)
  cloudlet sandbox exec demo -- 'httpd -p 80 -h /www' >/dev/null
  echo "   curl http://127.0.0.1:$port/ -> $(curl -s --max-time 20 "http://127.0.0.1:$port/")"
else
  echo "== 5. (the Debian base has no web server of its own: the Flask back-end below is one)"
fi

echo "== done. Sandboxes now:"
cloudlet sandbox list | sed 's/^/   /'

# =================================================================================================
# Two cloudlets and a live handoff (section owned by the daemon/handoff work; the part above is the
# sandbox demo). Build the back-end overlay (test guest: the sample back-end; Debian: a Flask app
# installed offline from .deb files), start two daemons on 127.0.0.2 and 127.0.0.3 that hold the
# base, synthesize on the first, call the back-end, hand it off to the second, call it again: its
# in-RAM counter goes on. Prints timings and bytes; the daemons and VMs stop at the end.
# =================================================================================================
work=$(mktemp -d /tmp/cloudlet-demo-XXXXXX)
pids=()
stop_cloudlets() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # VMs outlive a daemon by design (it adopts them on restart): end the ones this demo started.
  for p in $(pgrep -f "qemu-system.*$work" || true); do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap 'stop_cloudlets; cloudlet sandbox delete demo >/dev/null 2>&1 || true' EXIT

if [ "$guest" = debian ]; then
  workspace="$work/flask-backend"
  echo "== 6. build the Flask back-end overlay (test/fixtures/flask-backend) on base ${base:0:12}"
  cp -r test/fixtures/flask-backend "$workspace"
  sed -i "s/^base: .*/base: $base_name/" "$workspace/cloudlet.yaml"
  # The guest has no network of its own here: python3-flask and what it needs come as .deb files.
  t0=$(now); cloudlet guest debs --debian bookworm --package python3 python3-flask --out "$workspace/debs" | sed 's/^/   /'; t1=$(now)
  echo "   .deb files downloaded on the host in $(ms "$t0" "$t1") ms"
else
  workspace=test/fixtures/sample-backend
  echo "== 6. build the sample back-end overlay (test/fixtures/sample-backend) on base ${base:0:12}"
fi
t0=$(now); built=$(cloudlet build "$workspace" --base "$base" --rm --json); t1=$(now)
overlay=$(echo "$built" | json path)
echo "   overlay $(echo "$built" | json overlayId | cut -c1-12): $(stat -c %s "$overlay") bytes ($(ms "$t0" "$t1") ms)"

echo "== 7. two cloudlets on 127.0.0.2 and 127.0.0.3, each holding the base"
export CLOUDLET_CONFIG_DIR="$work/cli"   # the CLI's saved logins for this demo only
if [ "$guest" = test ]; then cloudlet base export "$base" "$work/base.tar" >/dev/null; fi
cat > "$work/config.yaml" <<YAML
projects: [demo]
users:
  - { name: alice, password: demo-secret, roles: { demo: [admin, member] } }
YAML
declare -A url
for ip in 127.0.0.2 127.0.0.3; do
  if [ "$guest" = test ]; then
    CLOUDLET_HOME="$work/$ip" cloudlet base import "$work/base.tar" >/dev/null
  else
    # 5 GiB of disk and RAM: on one machine the bundle is hard-linked rather than exported and
    # imported (its files are never written in place); the daemon checks every digest before use.
    mkdir -p "$work/$ip/bases" && cp -al "$CLOUDLET_HOME/bases/$base" "$work/$ip/bases/" && rm -f "$work/$ip/bases/$base/.verified.json"
    CLOUDLET_HOME="$work/$ip" cloudlet base verify "$base" >/dev/null
  fi
  node --import tsx sandbox/cli/main.ts serve --listen "$ip:0" --data "$work/$ip" --config "$work/config.yaml" > "$work/$ip.out" 2> "$work/$ip.log" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q '"listening"' "$work/$ip.out" 2>/dev/null && break; sleep 0.1; done
  url[$ip]=$(head -1 "$work/$ip.out" | json listening)
  CLOUDLET_PASSWORD=demo-secret cloudlet login "${url[$ip]}" --user alice --project demo --name "$ip" >/dev/null
  echo "   cloudlet $ip: ${url[$ip]}"
done

echo "== 8. synthesize the overlay on 127.0.0.2"
t0=$(now); srv=$(cloudlet synthesize --cloudlet 127.0.0.2 "$overlay" --name counter --json 2>/dev/null | tail -1); t1=$(now)
hp=$(echo "$srv" | json "OS-EXT-CLOUDLET:ports.$app_port")
echo "   server $(echo "$srv" | json id) ACTIVE in $(ms "$t0" "$t1") ms (upload + synthesis), back-end on $hp"
echo "   curl http://$hp$app_path -> $(curl -s --max-time 60 "http://$hp$app_path")"
echo "   curl http://$hp$app_path -> $(curl -s --max-time 60 "http://$hp$app_path")"

echo "== 9. hand it off, running, to 127.0.0.3"
t0=$(now); report=$(cloudlet handoff counter --cloudlet 127.0.0.2 --to 127.0.0.3 --json 2>/dev/null | tail -1); t1=$(now)
echo "   total $(echo "$report" | json total_ms) ms, downtime $(echo "$report" | json downtime_ms) ms, $(echo "$report" | json bytes_sent) bytes in $(echo "$report" | json rounds) rounds ($(ms "$t0" "$t1") ms as seen by the CLI)"
echo "   per round (bytes): $(echo "$report" | json round_bytes)"
moved=$(cloudlet servers --cloudlet 127.0.0.3 --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s).find(x=>x.name==="counter");console.log(v["OS-EXT-CLOUDLET:ports"][process.argv[1]])})' "$app_port")
echo "   servers on 127.0.0.2: $(cloudlet servers --cloudlet 127.0.0.2 --json | json length)"
echo "   curl http://$moved$app_path (now on 127.0.0.3) -> $(curl -s --max-time 60 "http://$moved$app_path")"
echo "== done: the counter went on across the handoff; stopping both cloudlets"
