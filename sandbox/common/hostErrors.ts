/**
 * Host errors as a cloudlet's users may see them: a full disk named by file and stage (an ENOSPC
 * from a write says neither), and messages cleared of the daemon host's absolute paths before they
 * reach a server fault or an API answer (the daemon log keeps them whole).
 */
import * as path from 'path';
import { CloudletError } from './errors';

const DISK_FULL = /\b(ENOSPC|EDQUOT)\b|No space left on device|Disk quota exceeded/;

/** Whether `e` says the disk (or the user's quota) is full. */
export function isDiskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || (e instanceof Error && DISK_FULL.test(e.message));
}

/** A disk-full error as one naming the file being written and the stage; any other error as it is. */
export function diskFullError(e: unknown, file: string, stage: string): unknown {
  if (!isDiskFull(e) || (e instanceof CloudletError && e.message.startsWith('no space left'))) return e;
  return new CloudletError('Unavailable', `no space left on the device while ${stage}: writing ${file} failed`, {
    status: 507, hint: 'free space on the filesystem of the daemon\'s data folder, then try again', cause: e,
  });
}

/** Runs `fn`; a disk-full error out of it names `file` and `stage`. */
export function onDiskFull<T>(file: string, stage: string, fn: () => T): T {
  try { return fn(); } catch (e) { throw diskFullError(e, file, stage); }
}

/** As onDiskFull, for a promise. */
export async function onDiskFullAsync<T>(file: string, stage: string, p: Promise<T>): Promise<T> {
  try { return await p; } catch (e) { throw diskFullError(e, file, stage); }
}

/** Data folders of daemons in this process: paths under one are shown as DATA/<relative path>. */
const dataRoots = new Set<string>();

export function registerDataRoot(dir: string): void { dataRoots.add(path.resolve(dir)); }

// Top-level folders of a Unix host: an absolute path starting with one is a host path (API paths
// such as /compute/v2.1/servers are not).
const HOST_PATH = /(^|[\s'"`(=:,[])(\/(?:home|root|tmp|var|usr|etc|opt|srv|mnt|media|run|proc|sys|dev|nix|snap|lib|lib64|bin|sbin|boot|data|work|private|Users)(?:\/[^\s'"`),;\]]*)?)/g;

/**
 * `text` without the daemon host's absolute paths: one under a registered data folder becomes
 * DATA/<relative path>, any other host path its last component after "…/".
 */
export function hideHostPaths(text: string): string {
  let out = text;
  for (const root of [...dataRoots].sort((a, b) => b.length - a.length)) out = out.split(root + path.sep).join('DATA/').split(root).join('DATA');
  return out.replace(HOST_PATH, (_m, lead: string, p: string) => `${lead}…/${path.basename(p.replace(/\/+$/, '')) || ''}`);
}
