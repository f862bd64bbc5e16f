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
};

export function missingTool(program: string, detail?: string): CloudletError {
  const base = program.split('/').pop() ?? program;
  const pkg = PACKAGE_OF[base] ?? base;
  return new CloudletError('MissingTool', `${base} is not installed${detail ? ` (${detail})` : ''}`, {
    hint: `apt-get install ${pkg}`,
  });
}

export function run(program: string, args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv; allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      reject(e.code === 'ENOENT' ? missingTool(program) : e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const c = code ?? (signal ? 128 : 1);
      if (c !== 0 && !opts.allowFail) {
        reject(new CloudletError('Internal', `${program} ${args.join(' ')} failed (exit ${c}${signal ? `, ${signal}` : ''}): ${stderr.trim().slice(-2000)}`));
      } else resolve({ stdout, stderr, code: c });
    });
    if (child.stdin) { child.stdin.on('error', () => undefined); child.stdin.end(opts.input); }
  });
}
