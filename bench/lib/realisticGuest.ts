/**
 * Builds the realistic guest of the overlay benchmark from Debian packages, cached in
 * .cache/realistic-guest/ and resumable stage by stage (each stage leaves a marker when complete):
 *   1. rootfs   debootstrap --variant=minbase bookworm + kernel, systemd, udev (mirror of the host)
 *   2. debs     the back-end's .deb files (python3-flask, nginx-light and their dependencies that
 *               the base lacks), downloaded outside the guest, to be copied in by `cloudlet build`
 *   3. disk     guest config (fstab, networkd DHCP, cloudlet agent unit), mke2fs -d into a 4 GiB
 *               sparse raw disk; kernel and initrd taken from the rootfs
 * The base bundle (stage 4: boot, pause, save) is made by the benchmark with BaseStore.
 * Run alone: `node --import tsx bench/lib/realisticGuest.ts` (root, needs debootstrap and e2fsprogs).
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { projectCache, projectRoot } from '../../sandbox/common/paths';

export const REALISTIC_DISK_BYTES = 4 * 1024 ** 3;
export const REALISTIC_APPEND = 'root=/dev/vda rw console=ttyS0 net.ifnames=1 quiet';
const BASE_PACKAGES = ['linux-image-amd64', 'systemd-sysv', 'udev', 'ca-certificates', 'procps'];
const BACKEND_PACKAGES = ['python3-flask', 'nginx-light'];

export interface RealisticGuest {
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  debsDir: string;
  append: string;
}

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], cwd: opts.cwd });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with status ${r.status}`);
}

function mirror(): string {
  try {
    const text = fs.readFileSync('/etc/apt/sources.list.d/debian.sources', 'utf8');
    const m = /^URIs:\s*(\S+\/debian)\s*$/m.exec(text);
    if (m) return m[1];
  } catch { /* fall through */ }
  return 'http://deb.debian.org/debian';
}

function stage(dir: string, name: string, log: (s: string) => void, work: () => void): void {
  const marker = path.join(dir, `${name}.done`);
  if (fs.existsSync(marker)) { log(`realistic guest: ${name} (cached)`); return; }
  log(`realistic guest: ${name} ...`);
  const t0 = Date.now();
  work();
  fs.writeFileSync(marker, new Date().toISOString() + '\n');
  log(`realistic guest: ${name} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

/** Runs `fn` with proc/sys/dev mounted in the rootfs (apt and maintainer scripts need them). */
function withMounts(rootfs: string, fn: () => void): void {
  const mounts: string[] = [];
  try {
    for (const [src, dst, args] of [['proc', 'proc', ['-t', 'proc']], ['/sys', 'sys', ['--bind']], ['/dev', 'dev', ['--bind']]] as const) {
      const target = path.join(rootfs, dst);
      fs.mkdirSync(target, { recursive: true });
      sh('mount', [...args, src, target]);
      mounts.push(target);
    }
    fn();
  } finally {
    for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  }
}

export function buildRealisticGuest(log: (s: string) => void = (s) => process.stderr.write(s + '\n')): RealisticGuest {
  const dir = projectCache('realistic-guest');
  fs.mkdirSync(dir, { recursive: true });
  const rootfs = path.join(dir, 'rootfs');
  const debsDir = path.join(dir, 'debs');
  const disk = path.join(dir, 'disk.raw');

  stage(dir, 'rootfs', log, () => {
    fs.rmSync(rootfs, { recursive: true, force: true });
    sh('debootstrap', ['--variant=minbase', `--include=${BASE_PACKAGES.join(',')}`, 'bookworm', rootfs, mirror()]);
  });

  stage(dir, 'debs', log, () => {
    // apt in the rootfs knows exactly which dependencies the base lacks; download only, then move
    // the files out so the base disk does not hold them.
    fs.copyFileSync('/etc/resolv.conf', path.join(rootfs, 'etc/resolv.conf'));
    withMounts(rootfs, () => {
      sh('chroot', [rootfs, 'apt-get', 'update', '-q']);
      sh('chroot', [rootfs, 'apt-get', 'clean']); // debootstrap's own .debs are not the back-end's
      sh('chroot', [rootfs, 'apt-get', 'install', '-y', '-q', '--download-only', '--no-install-recommends', ...BACKEND_PACKAGES]);
    });
    fs.rmSync(debsDir, { recursive: true, force: true });
    fs.mkdirSync(debsDir);
    const archives = path.join(rootfs, 'var/cache/apt/archives');
    for (const f of fs.readdirSync(archives)) if (f.endsWith('.deb')) fs.renameSync(path.join(archives, f), path.join(debsDir, f));
    sh('chroot', [rootfs, 'apt-get', 'clean']);
    fs.rmSync(path.join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
    fs.mkdirSync(path.join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
  });

  stage(dir, 'disk', log, () => {
    const w = (rel: string, text: string, mode = 0o644) => {
      const f = path.join(rootfs, rel);
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, text, { mode });
    };
    w('etc/fstab', '/dev/vda / ext4 defaults,discard 0 1\n');
    w('etc/hostname', 'cloudlet-realistic\n');
    w('etc/systemd/network/20-wired.network', '[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\n');
    w('usr/local/sbin/cloudlet-agent', fs.readFileSync(path.join(projectRoot(), 'sandbox/guest/agent.sh'), 'utf8'), 0o755);
    w('etc/systemd/system/cloudlet-agent.service', fs.readFileSync(path.join(projectRoot(), 'sandbox/guest/cloudlet-agent.service'), 'utf8'));
    const wants = path.join(rootfs, 'etc/systemd/system/multi-user.target.wants');
    fs.mkdirSync(wants, { recursive: true });
    for (const [link, target] of [
      ['cloudlet-agent.service', '/etc/systemd/system/cloudlet-agent.service'],
      ['systemd-networkd.service', '/lib/systemd/system/systemd-networkd.service'],
    ]) {
      fs.rmSync(path.join(wants, link), { force: true });
      fs.symlinkSync(target, path.join(wants, link));
    }
    // Root shell on the serial console without a password (a throwaway benchmark guest).
    const getty = path.join(rootfs, 'etc/systemd/system/serial-getty@ttyS0.service.d');
    fs.mkdirSync(getty, { recursive: true });
    fs.writeFileSync(path.join(getty, 'autologin.conf'), '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,38400,9600 %I $TERM\n');
    fs.rmSync(path.join(rootfs, 'etc/resolv.conf'), { force: true });
    const boot = path.join(rootfs, 'boot');
    const kernel = fs.readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
    const initrd = fs.readdirSync(boot).find((f) => f.startsWith('initrd.img-'));
    if (!kernel || !initrd) throw new Error(`no kernel/initrd in ${boot}`);
    fs.copyFileSync(path.join(boot, kernel), path.join(dir, 'vmlinuz'));
    fs.copyFileSync(path.join(boot, initrd), path.join(dir, 'initrd.img'));
    fs.rmSync(disk, { force: true });
    fs.writeFileSync(disk, '');
    fs.truncateSync(disk, REALISTIC_DISK_BYTES);
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', rootfs, disk]);
  });

  return { dir, disk, kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), debsDir, append: REALISTIC_APPEND };
}

if (require.main === module) {
  const g = buildRealisticGuest();
  process.stdout.write(JSON.stringify(g) + '\n');
}
