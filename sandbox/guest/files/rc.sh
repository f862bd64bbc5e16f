#!/bin/sh
# Test guest system set-up (run once by busybox init).
mount -t proc proc /proc
mount -t sysfs sys /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname cloudlet-guest
# User-mode networking (slirp) always hands out 10.0.2.15 with the gateway at 10.0.2.2.
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "nameserver 10.0.2.3" >/etc/resolv.conf 2>/dev/null
echo "cloudlet-guest: ready" >/dev/ttyS0
