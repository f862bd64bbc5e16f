/** Base VMs: import (bundle file), create (test guest, Debian 12 or a disk image, through the CLI), export, resume in the sandbox. */
import * as cp from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import type { Ext } from '../ext';
import { CloudletError } from '../../sandbox/client';
import type { CommandDef } from './registry';
import { checkEnd, isNode, missing, need, pickBase, runJob, sessionOf, walkthroughDone } from './common';
import { LOCAL } from '../cloudlets';
import { resolveTools } from '../localDaemon';
import { localDaemonSettings } from '../settings';
import { parseProgressLine } from '../state/cliOutput';

const BASE_KINDS: (vscode.QuickPickItem & { v: 'test' | 'debian' | 'image'; args: string[]; name: string })[] = [
  { label: 'Test guest', description: 'busybox, 128 MiB: about a minute', detail: 'The tiny guest the tour and the tests use (built from Debian packages once, then cached).', v: 'test', args: ['--test-guest'], name: 'test-guest' },
  { label: 'Debian 12', description: 'built from Debian packages: several minutes the first time', detail: 'Debian bookworm with systemd, DHCP, a serial login and the guest agent (building needs root or fakeroot-capable tools).', v: 'debian', args: ['--debian', 'bookworm'], name: 'deb12' },
  { label: 'Disk image file...', description: 'qcow2, raw or vmdk', detail: 'A cloud image (Debian, Ubuntu) is booted through its own boot loader; cloud-init installs the guest agent.', v: 'image', args: [], name: '' },
];

/**
 * Runs `cloudlet base create` (the same Node and CLI as the local daemon) in a scratch home next to
 * the daemon's data, then `cloudlet base export` and an import through the daemon's image API, so
 * the running daemon lists the base at once (every digest checked on the way in). Progress and
 * Cancel in a notification; a failure throws with the CLI's own words (the last console lines of a
 * guest that never became ready included), the whole output in the log.
 */
async function createBase(ext: Ext, name: string, kindArgs: string[], what: string): Promise<void> {
  const settings = localDaemonSettings();
  const { node, cli } = resolveTools(settings);
  const s = await sessionOf(ext, LOCAL);
  fs.mkdirSync(ext.localDaemon.dataDir, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(ext.localDaemon.dataDir, '.create-base-'));
  const run = (args: string[], progress: vscode.Progress<{ message?: string; increment?: number }>, signal: AbortSignal) => new Promise<void>((resolve, reject) => {
    ext.output.info(`create base: ${node} ${[...settings.nodeArgs, cli, ...args].join(' ')}`);
    const p = cp.spawn(node, [...settings.nodeArgs, cli, ...args], { env: { ...process.env, CLOUDLET_HOME: scratch, CLOUDLET_CLI_MAIN: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    let buf = '';
    let lastPct = 0;
    const onAbort = () => p.kill('SIGTERM');
    signal.addEventListener('abort', onAbort, { once: true });
    p.stdout.on('data', (b: Buffer) => { tail = (tail + b.toString()).slice(-20_000); });
    p.stderr.on('data', (b: Buffer) => {
      tail = (tail + b.toString()).slice(-20_000);
      buf += b.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        ext.output.info(`create base ${name}: ${line.trim()}`);
        const e = parseProgressLine(line);
        if (!e) continue;
        const inc = e.pct !== undefined && e.pct > lastPct ? e.pct - lastPct : undefined;
        if (e.pct !== undefined) lastPct = e.pct === 100 ? 0 : Math.max(lastPct, e.pct);
        progress.report({ message: `${e.phase}${e.message ? `: ${e.message}` : ''}${e.pct !== undefined ? ` ${e.pct}%` : ''}`, increment: inc });
      }
    });
    p.once('error', (e) => reject(new CloudletError('MissingTool', `could not run ${node}: ${e.message}`)));
    p.once('close', (code) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) { reject(new CloudletError('Cancelled', 'cancelled')); return; }
      if (code === 0) { resolve(); return; }
      const said = tail.trim().split('\n').filter((l) => !parseProgressLine(l));
      const err = said.findIndex((l) => l.startsWith('cloudlet: '));
      const text = (err >= 0 ? said.slice(err) : said.slice(-15)).join('\n').replace(/^cloudlet: /, '');
      ext.output.error(`create base ${name} failed (exit ${code}):\n${tail.trim().split('\n').slice(-40).join('\n')}`);
      reject(new CloudletError('Internal', `Creating base VM ${name} (${what}) failed: ${text || `exit code ${code}`}`));
    });
  });
  try {
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Creating base VM ${name} (${what})`, cancellable: true }, async (progress, token) => {
      const abort = new AbortController();
      token.onCancellationRequested(() => abort.abort());
      await run(['base', 'create', '--name', name, ...kindArgs], progress, abort.signal);
      progress.report({ message: 'export: into one bundle for the sandbox daemon' });
      const bundle = path.join(scratch, `${name}.tar`);
      await run(['base', 'export', name, bundle], progress, abort.signal);
      progress.report({ message: 'import: into the sandbox daemon (every digest checked)' });
      await s.importBase(bundle, name, abort.signal, (e) => progress.report({ message: `import ${e.total ? Math.floor(((e.done ?? 0) / e.total) * 100) : 0}%` }));
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

export const baseCommands: CommandDef[] = [
  {
    id: 'cloudlet.importBase',
    async run(ext) {
      const files = need(await vscode.window.showOpenDialog({ title: 'Import Base VM', canSelectMany: false, filters: { 'Base VM bundle (cloudlet base export)': ['tar', 'cloudletbase'], 'All files': ['*'] } }));
      const file = files[0].fsPath;
      const name = need(await vscode.window.showInputBox({ title: 'Import Base VM', prompt: 'Name of the base VM', value: path.basename(file).replace(/\.[^.]+$/, ''), ignoreFocusOut: true }));
      const s = await sessionOf(ext, LOCAL);
      await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Importing base VM ${name}`, cancellable: true }, async (progress, token) => {
        const abort = new AbortController();
        token.onCancellationRequested(() => abort.abort());
        await s.importBase(file, name, abort.signal, (e) => progress.report({ message: `${e.phase}${e.total ? ` ${Math.floor(((e.done ?? 0) / e.total) * 100)}%` : ''}` }));
      });
      ext.refresh('sandbox', true);
      walkthroughDone('base');
      void vscode.window.showInformationMessage(`Base VM ${name} imported (every digest checked).`);
    },
  },
  {
    id: 'cloudlet.createBase',
    async run(ext) {
      const kind = need(await vscode.window.showQuickPick(BASE_KINDS, { title: 'Create Base VM (1/2)', placeHolder: 'What the base VM runs', ignoreFocusOut: true }));
      let args: string[] = kind.args;
      let suggested = kind.name;
      if (kind.v === 'image') {
        const files = need(await vscode.window.showOpenDialog({ title: 'Create Base VM from a disk image (qcow2, raw or vmdk; a cloud image with cloud-init)', canSelectMany: false,
          filters: { 'Disk images': ['qcow2', 'img', 'raw', 'vmdk'], 'All files': ['*'] } }));
        args = ['--image', files[0].fsPath];
        suggested = path.basename(files[0].fsPath).replace(/\.[^.]+$/, '').replace(/[^\w.-]/g, '-');
      }
      const name = need(await vscode.window.showInputBox({ title: 'Create Base VM (2/2)', prompt: 'Name of the base VM', value: suggested, ignoreFocusOut: true,
        validateInput: (v) => (/^[\w.-]+$/.test(v) ? undefined : 'Letters, digits, dot, dash, underscore') }));
      await createBase(ext, name, args, kind.label);
      ext.refresh('sandbox', true);
      walkthroughDone('base');
      void vscode.window.showInformationMessage(`Base VM ${name} created and imported into the sandbox.`, 'Resume It').then((c) => {
        if (c) void vscode.commands.executeCommand('cloudlet.resumeBase');
      });
    },
  },
  {
    id: 'cloudlet.exportBase',
    async run(ext, node?: unknown) {
      const cloudlet = isNode(node) && node.cloudlet ? node.cloudlet : LOCAL;
      const s = await sessionOf(ext, cloudlet);
      const base = isNode(node) && node.kind === 'base' && node.resourceId
        ? (await s.listImages()).find((i) => i.id === node.resourceId) ?? missing('base VM')
        : await pickBase(ext, cloudlet, 'Base VM to export');
      const target = need(await vscode.window.showSaveDialog({ title: 'Export Base VM', defaultUri: vscode.Uri.file(path.join(process.env.HOME ?? '/', `${base.name}.tar`)) }));
      await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Exporting ${base.name}`, cancellable: true }, async (progress, token) => {
        const abort = new AbortController();
        token.onCancellationRequested(() => abort.abort());
        await s.exportBase(base.id, target.fsPath, abort.signal, (e) => progress.report({ message: `${e.phase}${e.total ? ` ${Math.floor(((e.done ?? 0) / e.total) * 100)}%` : ''}` }));
      });
      void vscode.window.showInformationMessage(`Base VM ${base.name} exported to ${target.fsPath}.`);
    },
  },
  {
    id: 'cloudlet.resumeBase',
    async run(ext, node?: unknown) {
      const s = await sessionOf(ext, LOCAL);
      const base = isNode(node) && node.kind === 'base' && node.resourceId
        ? (await s.listImages()).find((i) => i.id === node.resourceId) ?? missing('base VM')
        : await pickBase(ext, LOCAL, 'Base VM to resume in the sandbox');
      const existing = new Set((await s.listServers()).map((x) => x.name));
      let name = `sandbox-${base.name}`;
      for (let i = 2; existing.has(name); i++) name = `sandbox-${base.name}-${i}`;
      const { server, jobId } = await s.resumeBase(base.id, name);
      ext.refresh('sandbox');
      const end = await runJob(s, jobId, `Resuming ${base.name} in the sandbox`);
      ext.refresh('sandbox', true);
      checkEnd(end, `Resume of ${base.name}`);
      walkthroughDone('resumed');
      const now = await s.getServer(server.id).catch(() => server);
      void vscode.window.showInformationMessage(`Sandbox VM ${now.name} is ${now.status === 'ACTIVE' ? 'running' : now.status}.`, 'Open Terminal').then((c) => {
        if (c) void vscode.commands.executeCommand('cloudlet.openTerminal', { kind: 'sandbox', contextValue: 'sandbox running', cloudlet: LOCAL, resourceId: now.id, label: now.name, id: now.id, icon: '', collapsible: 'none' });
      });
    },
  },
];
