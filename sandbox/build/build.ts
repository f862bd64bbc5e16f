/**
 * `cloudlet build`: cloudlet.yaml -> overlay. Resume the base in a new sandbox, copy the workspace
 * files in, run the install commands, start the back-end, wait until it is ready, pause, create the
 * overlay. Every step reports progress and honours the abort signal; a failed or cancelled build
 * removes its sandbox (unless asked to keep it) and never leaves an overlay file behind.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { CloudletError, throwIfCancelled } from '../common/errors';
import { noProgress, ProgressSink } from '../common/progress';
import type { SandboxInfo, SandboxManager } from '../sandboxes/sandboxManager';
import { createSandboxOverlay, type SandboxOverlayResult } from '../overlay/sandboxOverlay';
import { BuildSpec } from './buildFile';

export interface BuildOptions {
  base?: string;              // overrides spec.base
  level?: number;
  threads?: number;
  outFile?: string;
  /** Delete the build sandbox after a successful build (default: keep it, paused, for inspection). */
  removeSandbox?: boolean;
  /** Keep the sandbox of a failed or cancelled build (default: delete it). */
  keepOnFailure?: boolean;
  signal?: AbortSignal;
  progress?: ProgressSink;
  log?: (line: string) => void;  // install/start output
}

export interface BuildResult {
  sandbox: SandboxInfo;
  kept: boolean;
  overlay: SandboxOverlayResult;
  timings: Record<'resumeMs' | 'copyMs' | 'installMs' | 'startMs' | 'readyMs' | 'overlayMs' | 'totalMs', number>;
}

/** Files under a copy source, with their guest destination (a file copies to `to`, a folder into it). */
function copyPlan(workspace: string, from: string, to: string): Array<{ host: string; guest: string; mode: number }> {
  const src = path.resolve(workspace, from);
  const st = fs.statSync(src);
  if (!st.isDirectory()) return [{ host: src, guest: to, mode: st.mode & 0o777 }];
  const out: Array<{ host: string; guest: string; mode: number }> = [];
  const walk = (dir: string, rel: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p, path.posix.join(rel, e.name));
      else if (e.isFile()) out.push({ host: p, guest: path.posix.join(to, rel, e.name), mode: fs.statSync(p).mode & 0o777 });
    }
  };
  walk(src, '');
  return out;
}

function httpStatus(port: number, urlPath: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: timeoutMs }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('timeout', () => { req.destroy(); resolve(0); });
    req.on('error', () => resolve(0));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function runBuild(manager: SandboxManager, spec: BuildSpec, opts: BuildOptions = {}): Promise<BuildResult> {
  const progress = opts.progress ?? noProgress;
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const base = manager.bases.get(opts.base ?? spec.base);
  const name = `build-${spec.name ?? 'app'}-${crypto.randomBytes(3).toString('hex')}`.slice(0, 64);
  const timings = { resumeMs: 0, copyMs: 0, installMs: 0, startMs: 0, readyMs: 0, overlayMs: 0, totalMs: 0 };
  let sandbox: SandboxInfo | undefined;
  let ok = false;
  const step = async <T>(key: keyof typeof timings, fn: () => Promise<T>): Promise<T> => {
    throwIfCancelled(opts.signal);
    const t = Date.now();
    const r = await fn();
    timings[key] = Date.now() - t;
    return r;
  };
  try {
    progress({ phase: 'resume', message: `resuming base ${base.name} (${base.id.slice(0, 12)})` });
    sandbox = await step('resumeMs', () => manager.resume(base.id, { name, ports: spec.ports }));
    const sb = sandbox.id;

    const files = spec.copy.flatMap((c) => copyPlan(spec.workspace, c.from, c.to));
    const total = files.reduce((n, f) => n + fs.statSync(f.host).size, 0);
    await step('copyMs', async () => {
      let done = 0;
      for (const f of files) {
        throwIfCancelled(opts.signal);
        progress({ phase: 'copy', message: f.guest, done, total });
        await manager.copyIn(sb, f.host, f.guest, { timeoutMs: 600_000 });
        const guestMode = (await manager.exec(sb, `chmod ${f.mode.toString(8)} ${q(f.guest)}`)).exitCode;
        if (guestMode !== 0) throw new CloudletError('Internal', `could not set the mode of ${f.guest} in the guest`);
        done += fs.statSync(f.host).size;
      }
      progress({ phase: 'copy', done: total, total });
    });

    await step('installMs', async () => {
      for (const [i, cmd] of spec.install.entries()) {
        throwIfCancelled(opts.signal);
        progress({ phase: 'install', message: `(${i + 1}/${spec.install.length}) ${cmd}` });
        const r = await manager.exec(sb, cmd, { timeoutMs: 1_800_000 });
        if (r.stdout) log(r.stdout.trimEnd());
        if (r.stderr) log(r.stderr.trimEnd());
        if (r.exitCode !== 0) {
          throw new CloudletError('BadInput', `install command ${i + 1} failed with status ${r.exitCode}: ${cmd}${r.stderr ? `\n${r.stderr.trimEnd().split('\n').slice(-10).join('\n')}` : ''}`);
        }
      }
    });

    if (spec.start) {
      await step('startMs', async () => {
        progress({ phase: 'start', message: spec.start });
        // Detached from the agent's session; output kept in the guest for debugging.
        const r = await manager.exec(sb, `mkdir -p /var/log; cd / && (setsid sh -c ${q(spec.start!)} </dev/null >>/var/log/cloudlet-backend.log 2>&1 &) ; sleep 0.2`, { timeoutMs: 60_000 });
        if (r.exitCode !== 0) throw new CloudletError('BadInput', `start command failed with status ${r.exitCode}: ${spec.start}\n${r.stderr}`);
      });
    }

    if (spec.ready) {
      const ready = spec.ready;
      await step('readyMs', async () => {
        progress({ phase: 'ready', message: ready.http ? `waiting for HTTP ${ready.http.status} on guest port ${ready.http.port}${ready.http.path}` : `waiting for: ${ready.command}` });
        const deadline = Date.now() + ready.timeout * 1000;
        const fwd = ready.http ? manager.get(sb).ports.find((p) => p.guest === ready.http!.port) : undefined;
        if (ready.http && !fwd) throw new CloudletError('Internal', `guest port ${ready.http.port} is not forwarded`);
        let last = '';
        for (;;) {
          throwIfCancelled(opts.signal);
          if (ready.http) {
            const st = await httpStatus(fwd!.host, ready.http.path, 5000);
            if (st === ready.http.status) break;
            last = st ? `HTTP ${st}` : 'no answer';
          } else {
            const r = await manager.exec(sb, ready.command!, { timeoutMs: 30_000 });
            if (r.exitCode === 0) break;
            last = `exit status ${r.exitCode}`;
          }
          if (Date.now() > deadline) {
            const logTail = await manager.exec(sb, 'tail -n 20 /var/log/cloudlet-backend.log 2>/dev/null', { timeoutMs: 10_000 }).catch(() => undefined);
            throw new CloudletError('Timeout', `the back-end was not ready within ${ready.timeout} s (last check: ${last})${logTail?.stdout ? `\nback-end log:\n${logTail.stdout}` : ''}`);
          }
          await sleep(500);
        }
      });
    }

    // Write dirty page cache back first: the disk layer then holds the installed files (consistent
    // on its own), and their page-cache copies in RAM dedup against those disk chunks.
    await manager.exec(sb, 'sync', { timeoutMs: 120_000 });
    progress({ phase: 'snapshot', message: 'pausing and creating the overlay' });
    const overlay = await step('overlayMs', () => createSandboxOverlay(manager, sb, {
      outFile: opts.outFile, level: opts.level, threads: opts.threads, ports: spec.ports, signal: opts.signal, progress, discard: spec.discard,
    }));
    ok = true;
    timings.totalMs = Date.now() - t0;
    if (opts.removeSandbox) await manager.delete(sb);
    return { sandbox: opts.removeSandbox ? sandbox : manager.get(sb), kept: !opts.removeSandbox, overlay, timings };
  } finally {
    if (!ok && sandbox && !opts.keepOnFailure) await manager.delete(sandbox.id).catch(() => undefined);
  }
}
