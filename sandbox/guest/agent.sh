#!/bin/sh
# cloudlet guest agent: serves the host on the virtio-serial port "org.cloudlet.agent".
# POSIX sh only: runs under busybox sh (test guest) and dash/bash (Debian guests).
# Needs: base64, mktemp or a writable /tmp, sleep; optional: timeout.
#
# Protocol (one request or reply per line, fields separated by one space, payloads base64):
#   host -> guest                          guest -> host
#   P <id>                                 D <id> 0                  (ping)
#   X <id> <timeout_s> <b64 cmd>           O <id> <b64>...  E <id> <b64>...  D <id> <exit status>
#   W <id> <b64 path> <octal mode>         D <id> 0                  (start a file copy)
#   C <id> <b64 chunk>                     (nothing: appended)
#   F <id>                                 D <id> <status>           (finish the copy: decode, move)
#   errors of the agent itself:            D <id> 255 and E <id> <b64 message> before it
# Stdout/stderr base64 is wrapped; the host concatenates the lines of one stream and decodes once.
# The host may disconnect at any time (save/resume of the VM): reads then return end-of-file, and
# the agent polls until a host connects again. Replies carry the request id so the host can skip
# stale ones.
#
# Install in a Debian guest: copy to /usr/local/sbin/cloudlet-agent (mode 0755) and enable
# sandbox/guest/cloudlet-agent.service (systemd); the busybox test guest runs it from inittab.

find_port() {
  if [ -e /dev/virtio-ports/org.cloudlet.agent ]; then
    echo /dev/virtio-ports/org.cloudlet.agent; return 0
  fi
  for n in /sys/class/virtio-ports/*/name; do
    [ -r "$n" ] || continue
    if [ "$(cat "$n")" = org.cloudlet.agent ]; then
      d=${n%/name}; echo "/dev/${d##*/}"; return 0
    fi
  done
  return 1
}

work=${TMPDIR:-/tmp}/cloudlet-agent.$$
mkdir -p "$work" || exit 1
trap 'rm -rf "$work"' EXIT

# CLOUDLET_AGENT_PORT=- serves stdin/stdout instead (tests run the script under several shells).
if [ "${CLOUDLET_AGENT_PORT:-}" = - ]; then
  exec 3<&0 4>&1
else
  port=${CLOUDLET_AGENT_PORT:-}
  while [ -z "$port" ]; do port=$(find_port) || { port=; sleep 1; }; done
  exec 3<>"$port" || exit 1
  exec 4>&3
fi

reply() { printf '%s\n' "$*" >&4; }

# Sends file $2 as lines "<tag> <id> <b64>" (tag $1, id $3).
send_b64() {
  [ -s "$2" ] || return 0
  base64 <"$2" | sed "s/^/$1 $3 /" >&4
}

fail() {  # id message
  printf '%s' "$2" >"$work/msg"
  send_b64 E "$work/msg" "$1"
  reply "D $1 255"
}

do_exec() {  # id timeout b64cmd
  if ! printf '%s' "$3" | base64 -d >"$work/cmd" 2>/dev/null; then fail "$1" "agent: bad base64 command"; return; fi
  if [ "$2" -gt 0 ] 2>/dev/null && command -v timeout >/dev/null 2>&1; then
    timeout "$2" sh "$work/cmd" </dev/null >"$work/out" 2>"$work/err" 3>&- 4>&-
  else
    sh "$work/cmd" </dev/null >"$work/out" 2>"$work/err" 3>&- 4>&-
  fi
  st=$?
  send_b64 O "$work/out" "$1"
  send_b64 E "$work/err" "$1"
  reply "D $1 $st"   # (the files are truncated by the next request's redirections: no rm fork)
}

copy_path=; copy_mode=; copy_id=
do_copy_start() {  # id b64path mode
  copy_path=$(printf '%s' "$2" | base64 -d 2>/dev/null) || copy_path=
  if [ -z "$copy_path" ]; then fail "$1" "agent: bad path"; return; fi
  copy_mode=$3; copy_id=$1
  : >"$work/copy.b64"
  reply "D $1 0"
}

do_copy_finish() {  # id
  if [ "$copy_id" != "$1" ]; then fail "$1" "agent: no copy in progress with this id"; return; fi
  dir=$(dirname "$copy_path")
  if mkdir -p "$dir" 2>"$work/err" && base64 -d <"$work/copy.b64" >"$copy_path.part" 2>>"$work/err" \
     && chmod "$copy_mode" "$copy_path.part" 2>>"$work/err" && mv -f "$copy_path.part" "$copy_path" 2>>"$work/err"; then
    reply "D $1 0"
  else
    rm -f "$copy_path.part"; send_b64 E "$work/err" "$1"; reply "D $1 1"
  fi
  rm -f "$work/copy.b64" "$work/err"; copy_id=
}

while :; do
  if ! IFS=' ' read -r verb id a b c <&3; then
    # End of file: no host connected (or it went away). Poll until one connects again.
    sleep 0.2 2>/dev/null || sleep 1
    continue
  fi
  case "$verb" in
    P) reply "D $id 0" ;;
    X) do_exec "$id" "$a" "$b" ;;
    W) do_copy_start "$id" "$a" "$b" ;;
    C) [ "$copy_id" = "$id" ] && printf '%s\n' "$a" >>"$work/copy.b64" ;;
    F) do_copy_finish "$id" ;;
    '') ;;
    *) fail "$id" "agent: unknown request '$verb'" ;;
  esac
done
