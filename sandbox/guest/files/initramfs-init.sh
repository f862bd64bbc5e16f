#!/bin/busybox sh
# Test guest initramfs: load the virtio and ext4 modules, mount the disk, switch to it.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules.list); do /bin/busybox insmod "/modules/$m" 2>/dev/null; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do /bin/busybox usleep 50000; n=$((n+1)); done
if ! /bin/busybox mount -t ext4 -o rw /dev/vda /newroot; then
  echo "cloudlet-guest: cannot mount /dev/vda"; exec /bin/busybox sh
fi
/bin/busybox mount --move /dev /newroot/dev
/bin/busybox umount /proc /sys
exec /bin/busybox switch_root /newroot /sbin/init
