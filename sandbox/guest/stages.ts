/**
 * Cached build stages for guests: each stage is a folder `<cache>/<name>-<key>/` whose key hashes
 * every input (including the key of the stage before it). A stage is built in
 * `<name>-<key>.partial-<pid>/` and renamed into place only when complete, so an interrupted build
 * leaves no stage that looks done, and the next build resumes from the last complete stage.
 * Stages that chroot or mount (debootstrap, grub) may leave mounts or loop devices behind when
 * killed: removing a partial folder undoes those first and never crosses into another filesystem.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { lockDir } from '../common/dirLock';
import { run } from '../qemu/run';

export interface StageInfo { name: string; key: string; inputs: unknown; builtAt: string; seconds: number }

export function stageKey(...parts: unknown[]): string {
  return crypto.createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  let text = '';
  try { text = fs.readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return []; }
  const root = path.resolve(dir);
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === root || mp.startsWith(`${root}/`)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Loop devices whose backing file is at or below `dir`. */
export function loopsUnder(dir: string): string[] {
  const root = path.resolve(dir);
  const out: string[] = [];
  let names: string[] = [];
  try { names = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop')); } catch { return []; }
  for (const n of names) {
    let backing = '';
    try { backing = fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim(); } catch { continue; }
    if (backing === root || backing.startsWith(`${root}/`)) out.push(`/dev/${n}`);
  }
  return out;
}

/** Processes chrooted into, or working in, `dir` (apt and dpkg of a builder that was killed). */
export function processesIn(dir: string): number[] {
  const root = path.resolve(dir);
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    for (const link of ['root', 'cwd']) {
      let target = '';
      try { target = fs.readlinkSync(`/proc/${p}/${link}`); } catch { continue; }
      if (target === root || target.startsWith(`${root}/`)) { out.push(Number(p)); break; }
    }
  }
  return out;
}

/**
 * Removes a build folder: ends processes still working in it, unmounts what is mounted inside,
 * detaches its loop devices, then rm -rf on one filesystem (never into a mount it missed).
 */
export async function removeBuildDir(dir: string): Promise<void> {
  if (!fs.existsSync(dir)) return;
  for (const pid of processesIn(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const m of mountsUnder(dir)) await run('umount', ['-l', m], { allowFail: true });
  for (const l of loopsUnder(dir)) await run('losetup', ['-d', l], { allowFail: true });
  if (mountsUnder(dir).length) throw new Error(`cannot remove ${dir}: something is still mounted inside it`);
  await run('rm', ['-rf', '--one-file-system', dir]);
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return false;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

export interface StageContext {
  /** The folder to build into (becomes the stage folder when `build` returns). */
  out: string;
  log: (line: string) => void;
  signal?: AbortSignal;
}

/**
 * Returns the stage folder for (name, key), building it with `build` unless a complete one exists.
 * `inputs` is recorded in stage.json (what the key was made of, for people reading the cache).
 */
export async function ensureStage(
  cacheDir: string, name: string, key: string, inputs: unknown,
  build: (c: StageContext) => Promise<void>,
  o: { log: (line: string) => void; signal?: AbortSignal; describe?: string },
): Promise<{ dir: string; cached: boolean }> {
  const dir = path.join(cacheDir, `${name}-${key}`);
  const done = () => fs.existsSync(path.join(dir, 'stage.json'));
  if (done()) return { dir, cached: true };
  fs.mkdirSync(cacheDir, { recursive: true });
  const unlock = await lockDir(dir, { signal: o.signal, onWait: () => o.log(`${name}: waiting for another build of the same stage`) });
  try {
    if (done()) return { dir, cached: true };
    // Leftovers of interrupted builds of this stage (their process is gone).
    for (const f of fs.readdirSync(cacheDir)) {
      const m = new RegExp(`^${name}-${key}\\.partial-(\\d+)$`).exec(f);
      if (m && !pidAlive(Number(m[1]))) await removeBuildDir(path.join(cacheDir, f));
    }
    if (fs.existsSync(dir)) await removeBuildDir(dir); // a folder without stage.json is not a stage
    const out = `${dir}.partial-${process.pid}`;
    await removeBuildDir(out);
    fs.mkdirSync(out, { recursive: true });
    o.log(`${name}: ${o.describe ?? 'building'}`);
    const t0 = Date.now();
    try {
      await build({ out, log: o.log, signal: o.signal });
      const info: StageInfo = { name, key, inputs, builtAt: new Date().toISOString(), seconds: Math.round((Date.now() - t0) / 1000) };
      fs.writeFileSync(path.join(out, 'stage.json'), JSON.stringify(info, null, 2) + '\n');
      fs.renameSync(out, dir);
    } catch (e) {
      await removeBuildDir(out).catch(() => undefined);
      throw e;
    }
    o.log(`${name}: done in ${Math.round((Date.now() - t0) / 1000)} s`);
    return { dir, cached: false };
  } finally { unlock(); }
}
