/** Base VMs: import (bundle file), create (test guest, Debian 12 or a disk image, through the CLI), export, resume in the sandbox. */
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import type { Ext } from '../ext';
import { onWindowClose } from '../settings';
import type { CloudletSession, ImageInfo } from '../api';
import type { CreateBaseRequest } from '../../sandbox/client/types';
import { isBaseImage, shortId } from '../state/tree';
import { CloudletError } from '../../sandbox/client';
import type { CommandDef } from './registry';
import { checkEnd, isNode, missing, need, pickBase, runJob, sessionOf, walkthroughDone } from './common';
import { LOCAL } from '../cloudlets';
import { runCli, scratchHome } from './cli';

const BASE_KINDS: (vscode.QuickPickItem & { v: CreateBaseRequest['source']; name: string })[] = [
  { label: 'Test guest', description: 'busybox, 128 MiB: about a minute', detail: 'The tiny guest the tour and the tests use (built from Debian packages once, then cached).', v: 'test-guest', name: 'test-guest' },
  { label: 'Debian 12', description: 'built from Debian packages: several minutes the first time', detail: 'Debian bookworm with systemd, DHCP, a serial login and the guest agent.', v: 'debian', name: 'deb12' },
  { label: 'Disk image file...', description: 'qcow2, raw or vmdk', detail: 'A cloud image (Debian, Ubuntu) is booted through its own boot loader; cloud-init installs the guest agent.', v: 'image', name: '' },
];

/**
 * A base-create job of the local daemon (POST /sandbox/v1/bases): progress and Cancel in a
 * notification (Cancel cancels the job: nothing is left in the base store), the new base listed at
 * once. A failure is thrown with the daemon's fault, whose message ends with the guest's last
 * console lines when it never became ready (the registry shows it and writes it to the log).
 */
async function createBase(ext: Ext, req: CreateBaseRequest, what: string): Promise<void> {
  const s = await sessionOf(ext, LOCAL);
  if (!s.createBase) throw new CloudletError('BadInput', 'The local daemon cannot create base VMs (no POST /sandbox/v1/bases)', { hint: 'update the cloudlet CLI' });
  const { jobId } = await s.createBase(req);
  ext.refresh('sandbox');
  const end = await runJob(s, jobId, `Creating base VM ${req.name} (${what})`);
  if (end.status === 'ERROR') ext.output.error(`Creating base VM ${req.name} (${what}) failed:\n${end.fault?.message ?? end.error ?? ''}`);
  checkEnd(end, `Creating base VM ${req.name} (${what})`);
}

/**
 * Copies a sandbox base to cloudlets: the CLI writes its bundle once (a scratch file next to the
 * daemon's data), each target imports it through its image API with progress (every digest checked
 * there), then the target must list the same base ID. Adding a base needs the admin role there:
 * said before anything is sent when the login is not admin.
 */
async function copyBase(ext: Ext, base: ImageInfo, targets: string[]): Promise<void> {
  const sessions: { name: string; s: CloudletSession }[] = [];
  for (const name of targets) {
    const s = await sessionOf(ext, name);
    if ((await s.listImages()).some((i) => isBaseImage(i) && i.baseId === base.baseId)) {
      void vscode.window.showInformationMessage(`${name} already has base VM ${base.name} (${shortId(base.baseId)}).`);
      continue;
    }
    if (s.isAdmin && !s.isAdmin()) {
      throw new CloudletError('Forbidden', `Only an admin of ${name} can add a base VM to it, and your login there is not one`,
        { hint: 'ask its operator to add the base (cloudlet base import on that host), or use "Update Credentials..." with an admin user' });
    }
    sessions.push({ name, s });
  }
  if (!sessions.length) return;
  const scratch = scratchHome(ext);
  try {
    await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Copying base VM ${base.name} to ${sessions.map((x) => x.name).join(', ')}`, cancellable: true }, async (progress, token) => {
      const abort = new AbortController();
      token.onCancellationRequested(() => abort.abort());
      const bundle = path.join(scratch, `${base.name}.tar`);
      progress.report({ message: 'export: the sandbox\'s bundle' });
      await runCli(ext, ['base', 'export', base.baseId!, bundle], { home: ext.localDaemon.dataDir, what: `Exporting base VM ${base.name}`, signal: abort.signal });
      for (const { name, s } of sessions) {
        let last = -1;
        const got = await s.importBase(bundle, base.name, abort.signal, (e) => {
          const pct = e.total ? Math.floor(((e.done ?? 0) / e.total) * 100) : 0;
          if (pct !== last) { last = pct; progress.report({ message: `${name}: sending ${pct}%` }); }
        });
        progress.report({ message: `${name}: checking` });
        if (got.baseId !== base.baseId) throw new CloudletError('Internal', `${name} imported the bundle as base ${shortId(got.baseId)}, not ${shortId(base.baseId)}`);
        ext.output.info(`base ${base.name} (${base.baseId}) copied to ${name}, verified there`);
      }
    });
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  ext.refresh('cloudlets', true);
  void vscode.window.showInformationMessage(`Base VM ${base.name} is on ${sessions.map((x) => x.name).join(' and ')} (verified there).`);
}

/** Copies the sandbox's base `baseId` to `cloudlet` (a failed synthesis's button). */
export async function copyBaseById(ext: Ext, baseId: string, cloudlet: string): Promise<void> {
  const base = (await (await sessionOf(ext, LOCAL)).listImages()).find((b) => isBaseImage(b) && b.baseId === baseId);
  if (!base) throw new CloudletError('NotFound', `the sandbox does not have base ${shortId(baseId)} either`, { hint: 'import or create it in the sandbox first' });
  await copyBase(ext, base, [cloudlet]);
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
      let image: string | undefined;
      let suggested = kind.name;
      if (kind.v === 'image') {
        const files = need(await vscode.window.showOpenDialog({ title: 'Create Base VM from a disk image (qcow2, raw or vmdk; a cloud image with cloud-init)', canSelectMany: false,
          filters: { 'Disk images': ['qcow2', 'img', 'raw', 'vmdk'], 'All files': ['*'] } }));
        image = files[0].fsPath;
        suggested = path.basename(image).replace(/\.[^.]+$/, '').replace(/[^\w.-]/g, '-');
      }
      const name = need(await vscode.window.showInputBox({ title: 'Create Base VM (2/2)', prompt: 'Name of the base VM', value: suggested, ignoreFocusOut: true,
        validateInput: (v) => (/^[\w.-]+$/.test(v) ? undefined : 'Letters, digits, dot, dash, underscore') }));
      await createBase(ext, { name, source: kind.v, ...(kind.v === 'debian' ? { suite: 'bookworm' } : {}), ...(image ? { image } : {}) }, kind.label);
      ext.refresh('sandbox', true);
      walkthroughDone('base');
      void vscode.window.showInformationMessage(`Base VM ${name} created in the sandbox.`, 'Resume It').then((c) => {
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
        // The sandbox's bases are files in its data folder: the CLI writes the bundle (a daemon's image API has no base data).
        if (cloudlet === LOCAL && base.baseId) {
          await runCli(ext, ['base', 'export', base.baseId, target.fsPath], { home: ext.localDaemon.dataDir, what: `Exporting base VM ${base.name}`, progress, signal: abort.signal });
        } else {
          await s.exportBase(base.id, target.fsPath, abort.signal, (e) => progress.report({ message: `${e.phase}${e.total ? ` ${Math.floor(((e.done ?? 0) / e.total) * 100)}%` : ''}` }));
        }
      });
      void vscode.window.showInformationMessage(`Base VM ${base.name} exported to ${target.fsPath}.`);
    },
  },
  {
    id: 'cloudlet.copyBaseToCloudlet',
    async run(ext, arg?: unknown) {
      const local = await sessionOf(ext, LOCAL);
      // From a Sandbox base node, from a failed synthesis ({ baseId, cloudlet }), or picked.
      const given = arg && typeof arg === 'object' && typeof (arg as { baseId?: unknown }).baseId === 'string' ? arg as { baseId: string; cloudlet?: string } : undefined;
      const bases = (await local.listImages()).filter(isBaseImage);
      const base = isNode(arg) && arg.kind === 'base' && arg.resourceId ? bases.find((b) => b.id === arg.resourceId) ?? missing('base VM')
        : given ? bases.find((b) => b.baseId === given.baseId) ?? missing(`base ${shortId(given.baseId)} in the sandbox`)
          : await pickBase(ext, LOCAL, 'Base VM to copy to a cloudlet');
      const configured = ext.cloudlets.list();
      if (!configured.length) throw new CloudletError('NotFound', 'No cloudlet is configured', { hint: 'Run "Cloudlet: Add Cloudlet..." first' });
      const targets = given?.cloudlet ? [given.cloudlet] : configured.length === 1 ? [configured[0].name] : need(await vscode.window.showQuickPick(configured.map((c) => ({ label: c.name, description: c.url, picked: false, name: c.name })),
        { title: `Copy base VM ${base.name} to`, placeHolder: 'One or more cloudlets', canPickMany: true, ignoreFocusOut: true })).map((x) => x.name);
      if (!targets.length) return;
      await copyBase(ext, base, targets);
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
      const onClose = onWindowClose() === 'pause' ? 'It is paused when this window closes' : 'It keeps running when this window closes';
      void vscode.window.showInformationMessage(`Sandbox VM ${now.name} is ${now.status === 'ACTIVE' ? 'running' : now.status}. ${onClose} (setting cloudlet.sandbox.onWindowClose).`, 'Open Terminal').then((c) => {
        if (c) void vscode.commands.executeCommand('cloudlet.openTerminal', { kind: 'sandbox', contextValue: 'sandbox running', cloudlet: LOCAL, resourceId: now.id, label: now.name, id: now.id, icon: '', collapsible: 'none' });
      });
    },
  },
];
