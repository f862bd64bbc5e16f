/**
 * The tiny test guest every integration test uses: Debian's kernel, an initramfs with static
 * busybox that loads the virtio/ext4 modules and switches to an ext4 disk, and that disk (busybox,
 * busybox init, the guest agent, a seconds counter, a web root). Built from Debian packages only,
 * cached in .cache/guest/ and rebuilt only when an input changes (key in guest.json).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { projectCache, projectRoot } from '../common/paths';
import { CloudletError } from '../common/errors';
import { run } from '../qemu/run';
import { ensureGuestKernel } from './kernel';
import { resolveModules } from './modules';

/** Bump when the layout of the built guest changes in a way the inputs' hash does not see. */
export const GUEST_BUILDER_VERSION = 3;
export const GUEST_DISK_BYTES = 64 * 1024 * 1024;
/** Modules the initramfs loads (their dependencies are added automatically). */
export const GUEST_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'crc32c_generic', 'ext4'];
/** Kernel command line of the test guest. */
export const GUEST_APPEND = 'console=ttyS0 quiet panic=-1 mitigations=off';

export interface TestGuest {
  key: string;              // hash of every input: a new key means a new guest
  kernel: string;           // vmlinuz
  initrd: string;
  disk: string;             // raw ext4 image (never booted directly: copy it)
  append: string;
  kernelRelease: string;
  readyMarker: string;      // printed on the console when set-up is done
}

// Works from the sources (tsx) and from the bundle in dist/ (the scripts are read from the checkout).
const here = path.join(projectRoot(), 'sandbox', 'guest');
export function guestSourceDir(): string { return here; }
export function agentScriptPath(): string { return path.join(here, 'agent.sh'); }

function inputsKey(kernelRelease: string): string {
  const h = crypto.createHash('sha256');
  h.update(`builder ${GUEST_BUILDER_VERSION}\nkernel ${kernelRelease}\nmodules ${GUEST_MODULES.join(',')}\nappend ${GUEST_APPEND}\ndisk ${GUEST_DISK_BYTES}\n`);
  for (const f of ['agent.sh', ...fs.readdirSync(path.join(here, 'files')).sort().map((n) => path.join('files', n))]) {
    h.update(`${f}\n`);
    h.update(fs.readFileSync(path.join(here, f)));
  }
  return h.digest('hex').slice(0, 16);
}

function busyboxPath(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (fs.existsSync(p)) return p;
  throw new CloudletError('MissingTool', 'static busybox is not installed', { hint: 'apt-get install busybox-static' });
}

async function buildInitramfs(stage: string, out: string, modulesDir: string): Promise<void> {
  fs.mkdirSync(path.join(stage, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(stage, 'modules'), { recursive: true });
  fs.copyFileSync(busyboxPath(), path.join(stage, 'bin', 'busybox'));
  fs.chmodSync(path.join(stage, 'bin', 'busybox'), 0o755);
  const mods = resolveModules(modulesDir, GUEST_MODULES);
  for (const rel of mods) fs.copyFileSync(path.join(modulesDir, rel), path.join(stage, 'modules', path.basename(rel)));
  fs.writeFileSync(path.join(stage, 'modules.list'), mods.map((m) => path.basename(m)).join('\n') + '\n');
  fs.copyFileSync(path.join(here, 'files', 'initramfs-init.sh'), path.join(stage, 'init'));
  fs.chmodSync(path.join(stage, 'init'), 0o755);
  await run('sh', ['-c', 'find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > "$0"', out], { cwd: stage });
}

async function buildDisk(stage: string, out: string): Promise<void> {
  const bb = busyboxPath();
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'usr/local/sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'root', 'mnt', 'var/log', 'www']) {
    fs.mkdirSync(path.join(stage, d), { recursive: true });
  }
  fs.copyFileSync(bb, path.join(stage, 'bin', 'busybox'));
  fs.chmodSync(path.join(stage, 'bin', 'busybox'), 0o755);
  const { stdout } = await run(bb, ['--list']);
  for (const name of stdout.split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox')) {
    fs.symlinkSync('busybox', path.join(stage, 'bin', name));
  }
  fs.symlinkSync('/bin/busybox', path.join(stage, 'sbin', 'init'));
  fs.symlinkSync('/bin/busybox', path.join(stage, 'usr', 'bin', 'env'));
  const put = (rel: string, from: string, mode: number) => {
    fs.copyFileSync(from, path.join(stage, rel));
    fs.chmodSync(path.join(stage, rel), mode);
  };
  put('etc/inittab', path.join(here, 'files', 'inittab'), 0o644);
  put('etc/rc.sh', path.join(here, 'files', 'rc.sh'), 0o755);
  put('etc/udhcpc.sh', path.join(here, 'files', 'udhcpc.sh'), 0o755);
  put('etc/counter.sh', path.join(here, 'files', 'counter.sh'), 0o755);
  put('etc/profile', path.join(here, 'files', 'profile'), 0o644);
  put('usr/local/sbin/cloudlet-agent', agentScriptPath(), 0o755);
  fs.writeFileSync(path.join(stage, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  fs.writeFileSync(path.join(stage, 'etc', 'group'), 'root:x:0:\n');
  fs.writeFileSync(path.join(stage, 'etc', 'hostname'), 'cloudlet-guest\n');
  fs.writeFileSync(path.join(stage, 'www', 'index.html'), '<h1>cloudlet test guest</h1>\n');
  fs.writeFileSync(out, '');
  fs.truncateSync(out, GUEST_DISK_BYTES);
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'cloudlet', '-E', 'root_owner=0:0', '-d', stage, out]);
}

/** Builds the test guest unless the cached one has the same inputs. Idempotent. */
export async function buildTestGuest(opts: { cacheDir?: string; force?: boolean; log?: (s: string) => void } = {}): Promise<TestGuest> {
  const log = opts.log ?? (() => {});
  const cacheDir = opts.cacheDir ?? projectCache('guest');
  const kernel = await ensureGuestKernel(cacheDir, log);
  const key = inputsKey(kernel.release);
  const outDir = path.join(cacheDir, 'current');
  const stampFile = path.join(outDir, 'guest.json');
  if (!opts.force && fs.existsSync(stampFile)) {
    const g = JSON.parse(fs.readFileSync(stampFile, 'utf8')) as TestGuest;
    if (g.key === key && [g.kernel, g.initrd, g.disk].every((f) => fs.existsSync(f))) return g;
  }
  log(`guest: building test guest ${key} (kernel ${kernel.release})`);
  const work = path.join(cacheDir, `build-${process.pid}`);
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  try {
    await buildInitramfs(path.join(work, 'initramfs'), path.join(work, 'initrd.img'), kernel.modulesDir);
    await buildDisk(path.join(work, 'rootfs'), path.join(work, 'disk.raw'));
    fs.copyFileSync(kernel.vmlinuz, path.join(work, 'vmlinuz'));
    fs.rmSync(path.join(work, 'initramfs'), { recursive: true, force: true });
    fs.rmSync(path.join(work, 'rootfs'), { recursive: true, force: true });
    const g: TestGuest = {
      key,
      kernel: path.join(outDir, 'vmlinuz'),
      initrd: path.join(outDir, 'initrd.img'),
      disk: path.join(outDir, 'disk.raw'),
      append: GUEST_APPEND,
      kernelRelease: kernel.release,
      readyMarker: 'cloudlet-guest: ready',
    };
    fs.writeFileSync(path.join(work, 'guest.json'), JSON.stringify(g, null, 2));
    // Swap in the finished guest as a whole, so a reader never sees a half-built one.
    const old = path.join(cacheDir, `old-${process.pid}`);
    if (fs.existsSync(outDir)) fs.renameSync(outDir, old);
    fs.renameSync(work, outDir);
    fs.rmSync(old, { recursive: true, force: true });
    return g;
  } catch (e) {
    fs.rmSync(work, { recursive: true, force: true });
    throw e;
  }
}
