/**
 * Runs a host program to completion and returns its output; a missing program becomes the
 * MissingTool error with the apt command that installs it.
 */
import { spawn } from 'child_process';
import { CloudletError } from '../common/errors';

export interface RunResult { stdout: string; stderr: string; code: number }

/** Which Debian package gives a host program (for MissingTool hints). */
const PACKAGE_OF: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86 qemu-utils',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  'mke2fs': 'e2fsprogs',
  'cpio': 'cpio',
  'busybox': 'busybox-static',
  'dpkg-deb': 'dpkg',
  'apt-get': 'apt',
  'apt-cache': 'apt',
  'debootstrap': 'debootstrap',
  'chroot': 'coreutils',
  'sfdisk': 'fdisk',
  'grub-mkimage': 'grub-pc-bin',
};

export function missingTool(program: string, detail?: string): CloudletError {
  const base = program.split('/').pop() ?? program;
  const pkg = PACKAGE_OF[base] ?? base;
  return new CloudletError('MissingTool', `${base} is not installed${detail ? ` (${detail})` : ''}`, {
    hint: `apt-get install ${pkg}`,
  });
}

export interface RunOptions {
  cwd?: string;
  input?: string;
  env?: NodeJS.ProcessEnv;
  allowFail?: boolean;
  timeoutMs?: number;
  /** Abort ends the program and its children (own process group) and rejects with Cancelled. */
  signal?: AbortSignal;
  /** Each complete line of stdout and stderr as it arrives (progress of long builds). */
  onLine?: (line: string) => void;
}

export function run(program: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) { reject(new CloudletError('Cancelled', 'cancelled')); return; }
    const child = spawn(program, args, {
      cwd: opts.cwd, env: opts.env ?? process.env, stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: opts.signal !== undefined, // a group of its own, so an abort reaches the children too
    });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    let cancelled = false;
    const killGroup = () => {
      try { if (child.pid) process.kill(opts.signal ? -child.pid : child.pid, 'SIGKILL'); } catch { /* already gone */ }
    };
    const onAbort = () => { cancelled = true; killGroup(); };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.timeoutMs) timer = setTimeout(killGroup, opts.timeoutMs);
    const lines = (() => {
      let partial = '';
      return (d: string) => {
        if (!opts.onLine) return;
        const parts = (partial + d).split(/\r\n|\r|\n/); // \r: progress lines that redraw
        partial = parts.pop() ?? '';
        for (const l of parts) if (l.trim()) opts.onLine(l);
      };
    })();
    child.stdout?.on('data', (d: Buffer) => { const t = d.toString(); stdout += t; lines(t); });
    child.stderr?.on('data', (d: Buffer) => { const t = d.toString(); stderr += t; lines(t); });
    const done = () => { if (timer) clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort); };
    child.on('error', (e: NodeJS.ErrnoException) => {
      done();
      reject(e.code === 'ENOENT' ? missingTool(program) : e);
    });
    child.on('close', (code, signal) => {
      done();
      if (cancelled) { reject(new CloudletError('Cancelled', 'cancelled')); return; }
      const c = code ?? (signal ? 128 : 1);
      if (c !== 0 && !opts.allowFail) {
        const out = (stderr.trim() || stdout.trim()).slice(-2000);
        reject(new CloudletError('Internal', `${program} ${args.join(' ')} failed (exit ${c}${signal ? `, ${signal}` : ''}): ${out}`));
      } else resolve({ stdout, stderr, code: c });
    });
    if (child.stdin) { child.stdin.on('error', () => undefined); child.stdin.end(opts.input); }
  });
}
