/**
 * Debian guests built from Debian packages (debootstrap + apt, as root), cached by their inputs and
 * resumable stage by stage (see stages.ts). One builder for the CLI (`cloudlet base create
 * --debian`), the integration tests and the benchmarks. Stages, each keyed by its inputs and the
 * stage before it:
 *   1. bootstrap  debootstrap --variant=minbase SUITE + kernel, systemd, udev (about 2 min)
 *   2. packages   extra packages installed with apt in a chroot (skipped when there are none)
 *   3. system     guest configuration for the flavor (see below)
 *   4. disk       the bootable output for the flavor
 * Flavors:
 *   agent        the cloudlet guest: DHCP with systemd-networkd, a root shell on the serial console
 *                (the editor's terminal), the guest agent as a systemd unit. Output: an ext4 disk
 *                (no partition table) booted with the kernel and initrd QEMU is given.
 *   cloud-image  a stand-in for a distribution's cloud image: cloud-init, ifupdown, a login prompt
 *                on the serial console, no agent; an MBR-partitioned disk that grub boots, as a
 *                compressed qcow2. It is imported with `base create --image` like a downloaded one.
 *   bare-image   the same disk without cloud-init (nor networking): an image `base create --image`
 *                must refuse with advice, as it has no way to get the agent in.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { projectCache } from '../common/paths';
import { noProgress, type ProgressSink } from '../common/progress';
import { qemuImgBinary } from '../qemu/host';
import { run } from '../qemu/run';
import { agentScriptPath, guestSourceDir } from './build';
import { ensureStage, removeBuildDir, stageKey, type StageContext } from './stages';

/** Bump a stage's recipe version when it changes in a way its inputs do not show (later stages follow). */
const RECIPE = { bootstrap: 1, packages: 1, system: 3, disk: 1, debs: 1 };
/** Suites the builder accepts (bookworm is the one the tests and benchmarks run). */
export const DEBIAN_SUITES = ['bullseye', 'bookworm', 'trixie'] as const;
export const DEBIAN_DEFAULT_DISK_BYTES = 4 * 1024 ** 3;
const MIN_DISK_BYTES = 1024 ** 3;
/** In every Debian guest: a kernel, systemd as init, udev; certificates and ps for real use. */
const CORE_PACKAGES = ['linux-image-amd64', 'systemd-sysv', 'udev', 'ca-certificates', 'procps'];
/** What the cloud-image flavor adds (as a Debian cloud image has: cloud-init, ifupdown networking). */
const CLOUD_IMAGE_PACKAGES = ['cloud-init', 'ifupdown', 'isc-dhcp-client'];
export const DEBIAN_ROOT_LABEL = 'cloudlet-root';
export const DEBIAN_APPEND = 'root=/dev/vda rw console=ttyS0 net.ifnames=1 quiet';
export const DEBIAN_HOSTNAME = 'cloudlet-debian';
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]{1,100}$/;
/** The host's grub for BIOS machines (grub-pc-bin): its modules go into cloud images. */
const GRUB_PC_DIR = '/usr/lib/grub/i386-pc';

export type DebianFlavor = 'agent' | 'cloud-image' | 'bare-image';
const FLAVORS: readonly DebianFlavor[] = ['agent', 'cloud-image', 'bare-image'];

export interface DebianSpec {
  suite: string;
  /** Extra Debian packages (names only; their dependencies come with them). */
  packages?: string[];
  diskBytes?: number;
  flavor?: DebianFlavor;
  /** Debian mirror URL; default: this host's apt source, else deb.debian.org. */
  mirror?: string;
}

export interface DebianGuest {
  key: string;              // the last stage's key: a new key means a new guest
  suite: string;
  flavor: DebianFlavor;
  packages: string[];       // the extra packages
  diskBytes: number;
  dir: string;              // the disk stage's folder
  rootfs: string;           // the configured tree the disk was made from (read-only: a cache)
  stages: string[];         // the stage folders it was made from, first to last
  /** agent flavor: boot these with -kernel/-initrd/-append */
  disk?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** cloud-image and bare-image flavors: a compressed qcow2 with a partition table and grub */
  image?: string;
}

export interface DebianBuildOptions {
  cacheDir?: string;        // default .cache/debian of the checkout (CLOUDLET_GUEST_CACHE overrides)
  onProgress?: ProgressSink;
  signal?: AbortSignal;
}

export function debianCacheDir(): string {
  return process.env.CLOUDLET_GUEST_CACHE ? path.join(process.env.CLOUDLET_GUEST_CACHE, 'debian') : projectCache('debian');
}

/** Validates a spec from the command line or an API body; returns it normalised (sorted packages). */
export function normaliseDebianSpec(s: DebianSpec): Required<Omit<DebianSpec, 'mirror'>> & { mirror: string } {
  if (!(DEBIAN_SUITES as readonly string[]).includes(s.suite)) {
    throw new CloudletError('BadInput', `unknown Debian suite ${JSON.stringify(s.suite)}`, { hint: `one of: ${DEBIAN_SUITES.join(', ')} (bookworm is Debian 12)` });
  }
  const packages = [...new Set(s.packages ?? [])].sort();
  for (const p of packages) {
    if (typeof p !== 'string' || !PACKAGE_NAME.test(p)) throw new CloudletError('BadInput', `${JSON.stringify(p)} is not a Debian package name`);
  }
  const diskBytes = s.diskBytes ?? DEBIAN_DEFAULT_DISK_BYTES;
  if (!Number.isSafeInteger(diskBytes) || diskBytes < MIN_DISK_BYTES || diskBytes % (1024 * 1024) !== 0) {
    throw new CloudletError('BadInput', `disk size ${diskBytes} bytes: give a whole number of MiB, at least 1 GiB`);
  }
  const flavor = s.flavor ?? 'agent';
  if (!FLAVORS.includes(flavor)) throw new CloudletError('BadInput', `unknown Debian guest flavor ${JSON.stringify(flavor)}`);
  const mirror = s.mirror ?? hostMirror();
  if (!/^https?:\/\/[A-Za-z0-9.:[\]/_~%+-]+$/.test(mirror)) throw new CloudletError('BadInput', `mirror ${JSON.stringify(mirror)} is not an http(s) URL`);
  return { suite: s.suite, packages, diskBytes, flavor, mirror };
}

/** The Debian mirror this host's apt uses (deb822 or one-line sources), else deb.debian.org. */
export function hostMirror(): string {
  if (process.env.CLOUDLET_DEBIAN_MIRROR) return process.env.CLOUDLET_DEBIAN_MIRROR;
  const files = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
  for (const f of files) {
    let text = '';
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    const m = /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(text) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+\S+/m.exec(text);
    if (m) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new CloudletError('Forbidden', 'building a Debian guest needs root (debootstrap and apt install packages into a chroot)', {
      hint: 'run it as root, e.g. sudo -E env "PATH=$PATH" cloudlet base create --debian bookworm --name deb12',
    });
  }
}

/** Runs `fn` with /proc and /sys mounted in the tree and services kept from starting (apt's maintainer scripts need both). */
async function inChroot<T>(rootfs: string, fn: () => Promise<T>): Promise<T> {
  const mounted: string[] = [];
  const policy = path.join(rootfs, 'usr/sbin/policy-rc.d');
  try {
    for (const [type, dst] of [['proc', 'proc'], ['sysfs', 'sys']] as const) {
      const target = path.join(rootfs, dst);
      fs.mkdirSync(target, { recursive: true });
      await run('mount', ['-t', type, type, target]);
      mounted.push(target);
    }
    fs.writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    fs.copyFileSync('/etc/resolv.conf', path.join(rootfs, 'etc/resolv.conf'));
    return await fn();
  } finally {
    fs.rmSync(policy, { force: true });
    for (const m of mounted.reverse()) await run('umount', ['-l', m], { allowFail: true });
  }
}

/** cp -a of a tree (reflinks where the filesystem has them). */
async function copyTree(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await run('cp', ['-a', '--reflink=auto', from, to], { signal });
}

/** A throttled line logger: long steps report what they do without flooding the progress stream. */
function throttled(log: (s: string) => void, prefix: string, everyMs = 3000): (line: string) => void {
  let last = 0;
  return (line) => {
    if (Date.now() - last < everyMs) return;
    last = Date.now();
    log(`${prefix}${line.trim().slice(0, 160)}`);
  };
}

async function bootstrap(c: StageContext, suite: string, mirror: string): Promise<void> {
  const rootfs = path.join(c.out, 'rootfs');
  await run('debootstrap', ['--variant=minbase', `--include=${CORE_PACKAGES.join(',')}`, suite, rootfs, mirror], {
    signal: c.signal, onLine: throttled(c.log, 'bootstrap: '),
  });
  // Downloaded archives are not part of the guest.
  await run('chroot', [rootfs, 'apt-get', 'clean'], { signal: c.signal });
}

async function installPackages(c: StageContext, from: string, packages: string[]): Promise<void> {
  const rootfs = path.join(c.out, 'rootfs');
  await copyTree(path.join(from, 'rootfs'), rootfs, c.signal);
  await inChroot(rootfs, async () => {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C.UTF-8' };
    await run('chroot', [rootfs, 'apt-get', 'update', '-q'], { signal: c.signal, env, onLine: throttled(c.log, 'packages: ') });
    await run('chroot', [rootfs, 'apt-get', 'install', '-y', '-q', '--no-install-recommends', ...packages], { signal: c.signal, env, onLine: throttled(c.log, 'packages: ') });
    await run('chroot', [rootfs, 'apt-get', 'clean'], { signal: c.signal });
  });
  // Package lists are large and stale by the time the guest runs: `apt-get update` in the guest fetches fresh ones.
  await run('rm', ['-rf', path.join(rootfs, 'var/lib/apt/lists')]);
  fs.mkdirSync(path.join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true });
}

function writeIn(rootfs: string, rel: string, text: string, mode = 0o644): void {
  const f = path.join(rootfs, rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.rmSync(f, { force: true });
  fs.writeFileSync(f, text, { mode });
  fs.chmodSync(f, mode);
}

function linkIn(rootfs: string, rel: string, target: string): void {
  const f = path.join(rootfs, rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.rmSync(f, { force: true });
  fs.symlinkSync(target, f);
}

function kernelFiles(rootfs: string): { vmlinuz: string; initrd: string } {
  const boot = path.join(rootfs, 'boot');
  const vmlinuz = fs.readdirSync(boot).filter((f) => f.startsWith('vmlinuz-')).sort().pop();
  const initrd = fs.readdirSync(boot).filter((f) => f.startsWith('initrd.img-')).sort().pop();
  if (!vmlinuz || !initrd) throw new CloudletError('Internal', `the guest tree has no kernel and initrd in ${boot}`);
  return { vmlinuz: path.join(boot, vmlinuz), initrd: path.join(boot, initrd) };
}

/** Files that make the tree a guest of the flavor (nothing here runs in the tree: plain files and links). */
async function configure(c: StageContext, from: string, flavor: DebianFlavor): Promise<void> {
  const rootfs = path.join(c.out, 'rootfs');
  await copyTree(path.join(from, 'rootfs'), rootfs, c.signal);
  const hostname = flavor === 'agent' ? DEBIAN_HOSTNAME : 'debian';
  writeIn(rootfs, 'etc/fstab', `LABEL=${DEBIAN_ROOT_LABEL} / ext4 defaults,discard,errors=remount-ro 0 1\n`);
  writeIn(rootfs, 'etc/hostname', `${hostname}\n`);
  writeIn(rootfs, 'etc/hosts', `127.0.0.1 localhost\n127.0.1.1 ${hostname}\n::1 localhost ip6-localhost ip6-loopback\n`);
  // QEMU's user networking answers DNS at 10.0.2.3 (the only network a cloudlet VM has).
  writeIn(rootfs, 'etc/resolv.conf', 'nameserver 10.0.2.3\n');
  // apt's daily timers would fetch lists and churn disk and RAM in every VM made from the base;
  // e2scrub checks LVM snapshots (there are none) and costs a minute of boot under TCG.
  for (const t of ['apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer', 'e2scrub_reap.service']) linkIn(rootfs, `etc/systemd/system/${t}`, '/dev/null');
  // Under TCG on a busy host udev can take minutes to announce ttyS0 and the agent's port: past
  // systemd's default 90 s, the serial console's getty would fail for good.
  writeIn(rootfs, 'etc/systemd/system.conf.d/50-slow-devices.conf', '[Manager]\nDefaultDeviceTimeoutSec=900\n');
  if (flavor === 'agent') {
    writeIn(rootfs, 'etc/systemd/network/20-wired.network', '[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\n');
    linkIn(rootfs, 'etc/systemd/system/multi-user.target.wants/systemd-networkd.service', '/lib/systemd/system/systemd-networkd.service');
    writeIn(rootfs, 'usr/local/sbin/cloudlet-agent', fs.readFileSync(agentScriptPath(), 'utf8'), 0o755);
    writeIn(rootfs, 'etc/systemd/system/cloudlet-agent.service', fs.readFileSync(path.join(guestSourceDir(), 'cloudlet-agent.service'), 'utf8'));
    linkIn(rootfs, 'etc/systemd/system/multi-user.target.wants/cloudlet-agent.service', '/etc/systemd/system/cloudlet-agent.service');
    // The serial console is the editor's terminal into the VM: a root shell, like the agent's exec
    // (whoever reaches either already controls the VM).
    writeIn(rootfs, 'etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf',
      '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,38400,9600 %I $TERM\n');
  } else {
    // As a cloud image: cloud-init configures networking and users (bare: nothing does); grub boots the kernel.
    if (!fs.existsSync(path.join(GRUB_PC_DIR, 'normal.mod'))) throw new CloudletError('MissingTool', 'grub for BIOS machines is not installed', { hint: 'apt-get install grub-pc-bin' });
    fs.mkdirSync(path.join(rootfs, 'boot/grub'), { recursive: true });
    await run('cp', ['-r', GRUB_PC_DIR, path.join(rootfs, 'boot/grub/i386-pc')]);
    if (flavor === 'cloud-image') writeIn(rootfs, 'etc/cloud/cloud.cfg.d/90-small-image.cfg',
      '# A small image: no locales package and no SSH server, so cloud-init leaves both alone.\nlocale: false\nssh_genkeytypes: []\n');
    const k = kernelFiles(rootfs);
    writeIn(rootfs, 'boot/grub/grub.cfg', [
      'set timeout=1',
      `search --no-floppy --label ${DEBIAN_ROOT_LABEL} --set=root`,
      'menuentry "Debian" {',
      `  linux /boot/${path.basename(k.vmlinuz)} root=LABEL=${DEBIAN_ROOT_LABEL} ro console=ttyS0`,
      `  initrd /boot/${path.basename(k.initrd)}`,
      '}', '',
    ].join('\n'));
  }
}

function duBytes(dir: string): Promise<number> {
  return run('du', ['-sb', '--one-file-system', dir]).then((r) => Number(r.stdout.split(/\s/)[0]));
}

async function checkFits(rootfs: string, diskBytes: number): Promise<void> {
  const used = await duBytes(rootfs);
  if (used * 1.25 + 64 * 1024 * 1024 > diskBytes) {
    throw new CloudletError('BadInput', `the guest's files take ${(used / 1024 ** 2).toFixed(0)} MiB: a ${(diskBytes / 1024 ** 2).toFixed(0)} MiB disk is too small`, { hint: 'give a larger --disk' });
  }
}

async function kernelDisk(c: StageContext, from: string, diskBytes: number): Promise<void> {
  const rootfs = path.join(from, 'rootfs');
  await checkFits(rootfs, diskBytes);
  const k = kernelFiles(rootfs);
  fs.copyFileSync(k.vmlinuz, path.join(c.out, 'vmlinuz'));
  fs.copyFileSync(k.initrd, path.join(c.out, 'initrd.img'));
  const disk = path.join(c.out, 'disk.raw');
  fs.writeFileSync(disk, '');
  fs.truncateSync(disk, diskBytes); // sparse
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', DEBIAN_ROOT_LABEL, '-d', rootfs, disk], { signal: c.signal });
}

/**
 * A disk as a cloud image has one: an MBR partition table, one ext4 partition from 1 MiB, and grub
 * in the MBR and the gap before the partition, as grub-install would put it there. Written into
 * the file directly (boot.img into the MBR's code area, core.img from sector 1, whose first sector
 * already lists the sectors after it): no loop device or mount, so nothing can be left attached.
 */
async function biosImage(c: StageContext, from: string, diskBytes: number): Promise<void> {
  const rootfs = path.join(from, 'rootfs');
  await checkFits(rootfs, diskBytes);
  const raw = path.join(c.out, 'disk.raw');
  const offset = 1024 * 1024;
  fs.writeFileSync(raw, '');
  fs.truncateSync(raw, diskBytes);
  await run('sfdisk', ['--quiet', raw], { input: 'label: dos\nstart=2048, type=83, bootable\n', signal: c.signal });
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', DEBIAN_ROOT_LABEL, '-b', '4096', '-E', `offset=${offset}`, '-d', rootfs, raw, String((diskBytes - offset) / 4096)], { signal: c.signal });
  const core = path.join(c.out, 'core.img');
  await run('grub-mkimage', ['-O', 'i386-pc', '-d', GRUB_PC_DIR, '-o', core, '-p', '(hd0,msdos1)/boot/grub', 'biosdisk', 'part_msdos', 'ext2'], { signal: c.signal });
  const coreImg = fs.readFileSync(core);
  const bootImg = fs.readFileSync(path.join(GRUB_PC_DIR, 'boot.img'));
  if (bootImg.length !== 512 || coreImg.length > offset - 512) throw new CloudletError('Internal', `unexpected grub images (boot.img ${bootImg.length} bytes, core.img ${coreImg.length} bytes)`);
  const fd = fs.openSync(raw, 'r+');
  try {
    fs.writeSync(fd, bootImg, 0, 440, 0); // boot code only: the disk signature and partition table stay
    fs.writeSync(fd, coreImg, 0, coreImg.length, 512);
  } finally { fs.closeSync(fd); }
  fs.rmSync(core);
  // Distributions publish compressed qcow2 files: so does this one, to be imported the same way.
  await run(qemuImgBinary(), ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, path.join(c.out, 'image.qcow2')], { signal: c.signal });
  fs.rmSync(raw);
}

/** Builds (or takes from the cache) a Debian guest. Needs root and Debian's archive. */
export async function buildDebianGuest(spec: DebianSpec, o: DebianBuildOptions = {}): Promise<DebianGuest> {
  const s = normaliseDebianSpec(spec);
  const cacheDir = o.cacheDir ?? debianCacheDir();
  const progress = o.onProgress ?? noProgress;
  const log = (line: string) => progress({ phase: 'guest', message: line });
  const so = (describe: string) => ({ log, signal: o.signal, describe });

  const k1 = stageKey('bootstrap', RECIPE.bootstrap, s.suite, s.mirror, CORE_PACKAGES);
  const extras = [...new Set([...(s.flavor === 'cloud-image' ? CLOUD_IMAGE_PACKAGES : []), ...s.packages])].sort();
  const k2 = extras.length ? stageKey('packages', RECIPE.packages, k1, extras) : k1;
  const agentFiles = s.flavor === 'agent' ? [fs.readFileSync(agentScriptPath(), 'utf8'), fs.readFileSync(path.join(guestSourceDir(), 'cloudlet-agent.service'), 'utf8')] : [];
  const grub = s.flavor !== 'agent' ? (await run('grub-mkimage', ['--version'])).stdout.trim() : '';
  const k3 = stageKey('system', RECIPE.system, k2, s.flavor, agentFiles, grub);
  const k4 = stageKey('disk', RECIPE.disk, k3, s.diskBytes);

  // Everything cached: no root needed to use it.
  const final = path.join(cacheDir, `disk-${k4}`);
  const sys = path.join(cacheDir, `system-${k3}`);
  if (!(fs.existsSync(path.join(final, 'stage.json')) && fs.existsSync(path.join(sys, 'stage.json')))) requireRoot();

  const st1 = await ensureStage(cacheDir, 'bootstrap', k1, { suite: s.suite, mirror: s.mirror, packages: CORE_PACKAGES },
    (c) => bootstrap(c, s.suite, s.mirror), so(`debootstrap --variant=minbase ${s.suite} from ${s.mirror} (about 2 minutes)`));
  throwIfCancelled(o.signal);
  const st2 = extras.length
    ? await ensureStage(cacheDir, 'packages', k2, { from: k1, packages: extras }, (c) => installPackages(c, st1.dir, extras), so(`apt-get install ${extras.join(' ')}`))
    : st1;
  throwIfCancelled(o.signal);
  const st3 = await ensureStage(cacheDir, 'system', k3, { from: k2, flavor: s.flavor }, (c) => configure(c, st2.dir, s.flavor), so(`configuring the ${s.flavor} guest`));
  throwIfCancelled(o.signal);
  const st4 = await ensureStage(cacheDir, 'disk', k4, { from: k3, diskBytes: s.diskBytes },
    (c) => (s.flavor === 'agent' ? kernelDisk(c, st3.dir, s.diskBytes) : biosImage(c, st3.dir, s.diskBytes)),
    so(s.flavor === 'agent' ? `making the ${s.diskBytes / 1024 ** 3} GiB ext4 disk` : 'making the partitioned disk image with grub'));

  const g: DebianGuest = {
    key: k4, suite: s.suite, flavor: s.flavor, packages: s.packages, diskBytes: s.diskBytes,
    dir: st4.dir, rootfs: path.join(st3.dir, 'rootfs'), stages: [...new Set([st1.dir, st2.dir, st3.dir, st4.dir])],
  };
  if (s.flavor === 'agent') {
    Object.assign(g, { disk: path.join(st4.dir, 'disk.raw'), kernel: path.join(st4.dir, 'vmlinuz'), initrd: path.join(st4.dir, 'initrd.img'), append: DEBIAN_APPEND });
  } else g.image = path.join(st4.dir, 'image.qcow2');
  return g;
}

/**
 * Downloads the .deb files of `packages` and of every dependency the guest lacks, on the host (the
 * guest has no network of its own here), into a cached folder; `cloudlet build` copies them in
 * and `apt-get install /path/*.deb` installs them offline. The guest's own dpkg status decides
 * what is missing; the guest tree is not changed.
 */
export async function fetchDebs(guest: DebianGuest, packages: string[], o: DebianBuildOptions = {}): Promise<string> {
  const pkgs = [...new Set(packages)].sort();
  for (const p of pkgs) if (!PACKAGE_NAME.test(p)) throw new CloudletError('BadInput', `${JSON.stringify(p)} is not a Debian package name`);
  const cacheDir = o.cacheDir ?? debianCacheDir();
  const log = (line: string) => (o.onProgress ?? noProgress)({ phase: 'guest', message: line });
  const key = stageKey('debs', RECIPE.debs, path.basename(path.dirname(guest.rootfs)), pkgs);
  const st = await ensureStage(cacheDir, 'debs', key, { guest: guest.key, packages: pkgs }, async (c) => {
    const work = path.join(c.out, 'apt');
    const out = path.join(c.out, 'debs');
    for (const d of ['state/lists/partial', 'cache', 'parts', 'debs/partial']) fs.mkdirSync(path.join(c.out, d.startsWith('debs') ? d : `apt/${d}`), { recursive: true });
    const apt = (args: string[]) => run('apt-get', [
      '-q', '-o', `Dir::State=${work}/state`, '-o', `Dir::State::status=${guest.rootfs}/var/lib/dpkg/status`,
      '-o', `Dir::Cache=${work}/cache`, '-o', `Dir::Cache::Archives=${out}`,
      '-o', `Dir::Etc::SourceList=${guest.rootfs}/etc/apt/sources.list`, '-o', `Dir::Etc::SourceParts=${work}/parts`,
      '-o', 'Debug::NoLocking=1', ...args,
    ], { signal: c.signal, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, onLine: throttled(c.log, 'debs: ') });
    await apt(['update']);
    await apt(['install', '-y', '--download-only', '--no-install-recommends', ...pkgs]);
    await removeBuildDir(work);
    fs.rmSync(path.join(out, 'partial'), { recursive: true, force: true });
    fs.rmSync(path.join(out, 'lock'), { force: true });
    if (!fs.readdirSync(out).some((f) => f.endsWith('.deb'))) throw new CloudletError('Internal', `apt downloaded no .deb for ${pkgs.join(' ')} (already in the guest?)`);
  }, { log, signal: o.signal, describe: `apt-get download ${pkgs.join(' ')} and what the guest lacks` });
  return path.join(st.dir, 'debs');
}
