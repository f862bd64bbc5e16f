/** Base VMs: import (bundle file), create (from a bootable image, through the CLI), export, resume in the sandbox. */
import * as path from 'path';
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import { checkEnd, isNode, missing, need, pickBase, runJob, sessionOf } from './common';
import { LOCAL } from '../cloudlets';
import { resolveTools } from '../localDaemon';
import { localDaemonSettings } from '../settings';

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
      void vscode.window.showInformationMessage(`Base VM ${name} imported (every digest checked).`);
    },
  },
  {
    id: 'cloudlet.createBase',
    async run(ext) {
      // Creating a base boots a guest from a bootable image and pauses it: a long, interactive job the
      // CLI does best, so it runs in a terminal with the same Node and CLI as the local daemon.
      const settings = localDaemonSettings();
      const { node, cli } = resolveTools(settings);
      const files = need(await vscode.window.showOpenDialog({ title: 'Create Base VM from a bootable disk image', canSelectMany: false }));
      const name = need(await vscode.window.showInputBox({ title: 'Create Base VM', prompt: 'Name of the base VM', value: path.basename(files[0].fsPath).replace(/\.[^.]+$/, ''), ignoreFocusOut: true }));
      // `cloudlet base create` works on the store in CLOUDLET_HOME: the local daemon's data folder.
      const t = vscode.window.createTerminal({ name: `Create base ${name}`, shellPath: node, shellArgs: [...settings.nodeArgs, cli, 'base', 'create', '--name', name, '--disk', files[0].fsPath],
        env: { CLOUDLET_HOME: ext.localDaemon.dataDir, CLOUDLET_CLI_MAIN: '1' } });
      t.show();
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
      const now = await s.getServer(server.id).catch(() => server);
      void vscode.window.showInformationMessage(`Sandbox VM ${now.name} is ${now.status === 'ACTIVE' ? 'running' : now.status}.`, 'Open Terminal').then((c) => {
        if (c) void vscode.commands.executeCommand('cloudlet.openTerminal', { kind: 'sandbox', contextValue: 'sandbox running', cloudlet: LOCAL, resourceId: now.id, label: now.name, id: now.id, icon: '', collapsible: 'none' });
      });
    },
  },
];
