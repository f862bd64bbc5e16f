#!/bin/sh
# cloudlet guest agent: serves the host on the virtio-serial port "org.cloudlet.agent".
# POSIX sh only: runs under busybox sh (test guest) and dash/bash (Debian guests).
# Needs: base64 (with -w), dd (with iflag=fullblock), chmod, mv, sleep, mkdir; no timeout(1).
#
# Protocol (one request or reply per line, fields separated by one space, payloads base64):
#   host -> guest                          guest -> host
#   P <id>                                 D <id> 0 2                (ping; "2": protocol version)
#   R <id> <timeout_s> <escaped cmd>       O <id> <b64>...  E <id> <b64>...  D <id> <exit status>
#   X <id> <timeout_s> <b64 cmd>           (the same, version 1: the command in base64)
#   W <id> <b64 path> <octal mode>         D <id> 0                  (start a file copy)
#   K <id> <n> then n raw bytes            (nothing: appended; version 2)
#   C <id> <b64 chunk>                     (nothing: appended; version 1)
#   F <id>                                 D <id> <status>           (finish the copy: mode, move)
#   errors of the agent itself:            D <id> 255 and E <id> <b64 message> before it
# R's command is escaped for printf %b: every byte other than ! to ~ (and the backslash) as \0ooo,
# so the agent decodes it with a builtin. A command runs in a subshell of the agent (a fork, no
# exec: each process start costs tens of ms in an emulated guest, far more just after a resume),
# with stdin /dev/null; past timeout_s it and its descendants get SIGTERM and the status is 124.
# Stdout/stderr base64 may come in several lines: the host concatenates the lines of one stream
# and decodes once. A version-1 host (no version in the ping reply expected) still works.
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

# Sends file $2 as one line "<tag> <id> <b64>" (tag $1, id $3): one process start per stream.
send_b64() {
  [ -s "$2" ] || return 0
  { printf '%s %s ' "$1" "$3"; base64 -w 0 <"$2"; printf '\n'; } >&4
}

fail() {  # id message
  printf '%s' "$2" >"$work/msg"
  send_b64 E "$work/msg" "$1"
  reply "D $1 255"
}

# SIGTERM to $1 and every process below it (what timeout(1) does to its process group: a
# non-interactive sh has no job control to give the command a group of its own).
kill_tree() {
  tree=" $1 " grew=1
  while [ -n "$grew" ]; do
    grew=
    for f in /proc/[0-9]*/stat; do
      read -r l <"$f" 2>/dev/null || continue
      p=${l%% *}; l=${l##*) }; l=${l#* }; pp=${l%% *}
      case "$tree" in *" $pp "*) case "$tree" in *" $p "*) ;; *) tree="$tree$p "; grew=1 ;; esac ;; esac
    done
  done
  for p in $tree; do kill -TERM "$p" 2>/dev/null; done
}

# Runs $work/cmd in a subshell (fork only) with a watchdog (fork + sleep: it runs alongside the
# command and is reaped after the reply), then replies. Args: id timeout_s.
run_cmd() {
  : >"$work/timedout"
  (
    trap - EXIT
    unset -f find_port reply send_b64 fail kill_tree run_cmd do_run do_exec do_copy_start do_copy_finish
    unset verb id a b c st dir copy_path copy_mode copy_id port tree grew cpid wpid
    set --
    exec </dev/null >"$work/out" 2>"$work/err" 3>&- 4>&-
    . "$work/cmd"
  ) &
  cpid=$! wpid=
  if [ "$2" -gt 0 ] 2>/dev/null; then
    (
      trap - EXIT; trap 'kill "${s:-}" 2>/dev/null; exit 0' TERM
      sleep "$2" & s=$!
      wait "$s" || exit 0
      trap '' TERM   # the agent's TERM (once the command is gone) must not cut the walk short
      echo 1 >"$work/timedout"; kill_tree "$cpid"
    ) </dev/null >/dev/null 2>&1 3>&- 4>&- &
    wpid=$!
  fi
  wait "$cpid"; st=$?
  [ -s "$work/timedout" ] && st=124
  send_b64 O "$work/out" "$1"
  send_b64 E "$work/err" "$1"
  reply "D $1 $st"   # (the files are truncated by the next request's redirections: no rm fork)
  if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null; fi
}

do_run() {  # id timeout escaped-cmd
  if ! printf '%b' "$3" >"$work/cmd" 2>/dev/null; then fail "$1" "agent: cannot write the command"; return; fi
  run_cmd "$1" "$2"
}

do_exec() {  # id timeout b64cmd (version 1)
  if ! printf '%s' "$3" | base64 -d >"$work/cmd" 2>/dev/null; then fail "$1" "agent: bad base64 command"; return; fi
  run_cmd "$1" "$2"
}

copy_path=; copy_mode=; copy_id=
do_copy_start() {  # id b64path mode
  copy_path=$(printf '%s' "$2" | base64 -d 2>/dev/null) || copy_path=
  copy_id=
  if [ -z "$copy_path" ]; then fail "$1" "agent: bad path"; return; fi
  case "$3" in *[!0-7]*|'') fail "$1" "agent: bad mode"; return ;; esac
  dir=${copy_path%/*}
  [ "$dir" != "$copy_path" ] || dir=.
  if [ -n "$dir" ] && [ ! -d "$dir" ] && ! mkdir -p "$dir" 2>"$work/err"; then send_b64 E "$work/err" "$1"; reply "D $1 1"; return; fi
  if ! : >"$copy_path.part" 2>"$work/err"; then send_b64 E "$work/err" "$1"; reply "D $1 1"; return; fi
  copy_mode=$3; copy_id=$1
  : >"$work/copy.b64"
  reply "D $1 0"
}

do_copy_finish() {  # id
  if [ "$copy_id" != "$1" ]; then fail "$1" "agent: no copy in progress with this id"; return; fi
  : >"$work/err"
  if { [ ! -s "$work/copy.b64" ] || base64 -d <"$work/copy.b64" >"$copy_path.part" 2>>"$work/err"; } \
     && chmod "$copy_mode" "$copy_path.part" 2>>"$work/err" && mv -f "$copy_path.part" "$copy_path" 2>>"$work/err"; then
    reply "D $1 0"
  else
    rm -f "$copy_path.part"; send_b64 E "$work/err" "$1"; reply "D $1 1"
  fi
  : >"$work/copy.b64"; copy_id=
}

while :; do
  if ! IFS=' ' read -r verb id a b c <&3; then
    # End of file: no host connected (or it went away). Poll until one connects again.
    sleep 0.2 2>/dev/null || sleep 1
    continue
  fi
  case "$verb" in
    P) reply "D $id 0 2" ;;
    R) do_run "$id" "$a" "$b" ;;
    X) do_exec "$id" "$a" "$b" ;;
    W) do_copy_start "$id" "$a" "$b" ;;
    K) # raw bytes follow the line: dd reads exactly n of them (the shell's read takes one byte a call)
       case "$a" in ''|*[!0-9]*|?????????*) fail "$id" "agent: bad length"; continue ;; esac
       if [ "$copy_id" = "$id" ]; then to=$copy_path.part; else to=/dev/null; fi
       [ "$a" -eq 0 ] || dd bs="$a" count=1 iflag=fullblock <&3 >>"$to" 2>/dev/null ;;
    C) [ "$copy_id" = "$id" ] && printf '%s\n' "$a" >>"$work/copy.b64" ;;
    F) do_copy_finish "$id" ;;
    '') ;;
    *) fail "$id" "agent: unknown request '$verb'" ;;
  esac
done
