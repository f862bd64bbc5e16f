/**
 * Runs the `cloudlet` CLI the local daemon runs from (same Node, same CLI, same options) for what
 * works on a base store directly: base create and export. Its progress lines go to a progress
 * notification, everything it prints to the log; Cancel sends SIGTERM (the CLI then cleans up: nothing
 * half-made is left in the store). A failure is thrown with the CLI's own words.
 */
import * as cp from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type * as vscode from 'vscode';
import type { Ext } from '../ext';
import { resolveTools } from '../localDaemon';
import { localDaemonSettings } from '../settings';
import { parseProgressLine } from '../state/cliOutput';
import { CloudletError } from '../../sandbox/client';

/** A scratch CLOUDLET_HOME next to the local daemon's data (same file system: no copy across disks). */
export function scratchHome(ext: Ext): string {
  fs.mkdirSync(ext.localDaemon.dataDir, { recursive: true });
  return fs.mkdtempSync(path.join(ext.localDaemon.dataDir, '.scratch-'));
}

export function runCli(ext: Ext, args: string[], o: { home: string; what: string; progress?: vscode.Progress<{ message?: string; increment?: number }>; signal?: AbortSignal }): Promise<string> {
  const settings = localDaemonSettings();
  const { node, cli } = resolveTools(settings);
  return new Promise<string>((resolve, reject) => {
    ext.output.info(`${o.what}: cloudlet ${args.join(' ')} (CLOUDLET_HOME=${o.home})`);
    const p = cp.spawn(node, [...settings.nodeArgs, cli, ...args], { env: { ...process.env, CLOUDLET_HOME: o.home, CLOUDLET_CLI_MAIN: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let tail = '';
    let buf = '';
    let lastPct = 0;
    const onAbort = () => p.kill('SIGTERM');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); tail = (tail + b.toString()).slice(-20_000); });
    p.stderr.on('data', (b: Buffer) => {
      tail = (tail + b.toString()).slice(-20_000);
      buf += b.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        ext.output.info(`  ${line.trim()}`);
        const e = parseProgressLine(line);
        if (!e || !o.progress) continue;
        const inc = e.pct !== undefined && e.pct > lastPct ? e.pct - lastPct : undefined;
        if (e.pct !== undefined) lastPct = e.pct === 100 ? 0 : Math.max(lastPct, e.pct);
        o.progress.report({ message: `${e.phase}${e.message ? `: ${e.message}` : ''}${e.pct !== undefined ? ` ${e.pct}%` : ''}`, increment: inc });
      }
    });
    p.once('error', (e) => reject(new CloudletError('MissingTool', `could not run ${node}: ${e.message}`)));
    p.once('close', (code) => {
      o.signal?.removeEventListener('abort', onAbort);
      if (o.signal?.aborted) { reject(new CloudletError('Cancelled', 'cancelled')); return; }
      if (code === 0) { resolve(out); return; }
      const said = tail.trim().split('\n').filter((l) => !parseProgressLine(l));
      const err = said.findIndex((l) => l.startsWith('cloudlet: '));
      const text = (err >= 0 ? said.slice(err) : said.slice(-15)).join('\n').replace(/^cloudlet: /, '');
      ext.output.error(`${o.what} failed (exit ${code}):\n${tail.trim().split('\n').slice(-40).join('\n')}`);
      reject(new CloudletError('Internal', `${o.what} failed: ${text || `exit code ${code}`}`));
    });
  });
}
