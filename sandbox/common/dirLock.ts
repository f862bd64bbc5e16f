/**
 * A lock between processes on one machine: `<path>.lock/` made with mkdir (atomic), holding the
 * owner's pid. A lock whose owner died is taken over, so an interrupted build never blocks the next.
 * Used where several processes may build the same cached thing (a guest stage, a cached base).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from './errors';

function holderAlive(lockDir: string): boolean {
  let holder = 0;
  try { holder = Number(fs.readFileSync(path.join(lockDir, 'pid'), 'utf8')); } catch { /* being written, or its writer died */ }
  if (!holder) {
    try { return Date.now() - fs.statSync(lockDir).mtimeMs < 10_000; } catch { return false; }
  }
  if (holder === process.pid) return false; // a lock of this process left by a crash of an earlier call
  try { process.kill(holder, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Waits for the lock on `target` (up to waitMs), returns the release function. */
export async function lockDir(target: string, o: { waitMs?: number; signal?: AbortSignal; onWait?: (holder: string) => void } = {}): Promise<() => void> {
  const l = `${target}.lock`;
  const deadline = Date.now() + (o.waitMs ?? 30 * 60_000);
  let told = false;
  fs.mkdirSync(path.dirname(l), { recursive: true });
  for (;;) {
    try {
      fs.mkdirSync(l);
      fs.writeFileSync(path.join(l, 'pid'), String(process.pid));
      return () => fs.rmSync(l, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (!holderAlive(l)) { fs.rmSync(l, { recursive: true, force: true }); continue; }
    if (!told) { told = true; o.onWait?.(l); }
    throwIfCancelled(o.signal);
    if (Date.now() > deadline) throw new CloudletError('Timeout', `timed out waiting for ${l} (another process is building the same thing)`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
