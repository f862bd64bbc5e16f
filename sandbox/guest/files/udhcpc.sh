#!/bin/sh
# udhcpc event script: take the address slirp's DHCP offers and nothing else. The guest needs no
# default route and no DNS: everything reaches it through ports QEMU forwards from 127.0.0.1.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
