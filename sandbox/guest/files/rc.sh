#!/bin/sh
# Test guest system set-up (run once by busybox init).
mount -t proc proc /proc
mount -t sysfs sys /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname cloudlet-guest
# User-mode networking (slirp): the address comes from its DHCP server; no route out is set up.
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.sh -q -n -t 5 -T 1 >/dev/null 2>&1
echo "cloudlet-guest: ready" >/dev/ttyS0
