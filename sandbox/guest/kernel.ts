/**
 * The test guest's kernel: Debian's own linux-image package, fetched with apt-get download and
 * unpacked with dpkg-deb (no root, nothing installed on the host), cached under CACHE/kernel/.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { run } from '../qemu/run';

export interface GuestKernel {
  release: string;          // e.g. 6.1.0-56-amd64
  vmlinuz: string;
  modulesDir: string;       // .../lib/modules/<release>
}

/** The versioned package the linux-image-amd64 metapackage depends on. */
async function kernelPackage(): Promise<string> {
  if (process.env.CLOUDLET_GUEST_KERNEL_PKG) return process.env.CLOUDLET_GUEST_KERNEL_PKG;
  const { stdout } = await run('apt-cache', ['depends', 'linux-image-amd64']);
  const m = /Depends:\s+(linux-image-[0-9][^\s]*-amd64)/.exec(stdout);
  if (!m) throw new CloudletError('Internal', `cannot find the kernel package in 'apt-cache depends linux-image-amd64':\n${stdout}`, { hint: 'apt-get update' });
  return m[1];
}

export async function ensureGuestKernel(cacheDir: string, log: (s: string) => void = () => {}): Promise<GuestKernel> {
  const dir = path.join(cacheDir, 'kernel');
  const stamp = path.join(dir, 'kernel.json');
  if (fs.existsSync(stamp)) {
    const k = JSON.parse(fs.readFileSync(stamp, 'utf8')) as GuestKernel;
    if (fs.existsSync(k.vmlinuz) && fs.existsSync(k.modulesDir)) return k;
  }
  const pkg = await kernelPackage();
  fs.mkdirSync(dir, { recursive: true });
  const debDir = path.join(dir, 'deb');
  fs.rmSync(debDir, { recursive: true, force: true });
  fs.mkdirSync(debDir, { recursive: true });
  log(`guest: downloading ${pkg} (apt-get download)`);
  await run('apt-get', ['download', pkg], { cwd: debDir });
  const deb = fs.readdirSync(debDir).find((f) => f.endsWith('.deb'));
  if (!deb) throw new CloudletError('Internal', `apt-get download ${pkg} produced no .deb`);
  const root = path.join(dir, 'root');
  fs.rmSync(root, { recursive: true, force: true });
  await run('dpkg-deb', ['-x', path.join(debDir, deb), root]);
  const release = pkg.replace(/^linux-image-/, '');
  const k: GuestKernel = {
    release,
    vmlinuz: path.join(root, 'boot', `vmlinuz-${release}`),
    modulesDir: path.join(root, 'lib', 'modules', release),
  };
  if (!fs.existsSync(k.vmlinuz)) throw new CloudletError('Internal', `${deb} has no boot/vmlinuz-${release}`);
  fs.rmSync(debDir, { recursive: true, force: true }); // the unpacked tree is all we need
  fs.writeFileSync(stamp, JSON.stringify(k, null, 2));
  return k;
}
