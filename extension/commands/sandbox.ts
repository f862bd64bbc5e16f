/** Sandbox VMs: terminal, pause/unpause/stop, build an overlay from the workspace's cloudlet.yaml. */
import * as path from 'path';
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import type { Ext } from '../ext';
import type { CloudletSession, ServerInfo } from '../api';
import { checkEnd, isNode, need, pickServer, runJob, sessionOf, walkthroughDone } from './common';
import { LOCAL } from '../cloudlets';
import { SerialConsoleTerminal } from '../terminal';
import { isBaseImage, serverState, shortId } from '../state/tree';
import { baseMatches, yamlBase } from '../state/cloudletYaml';
import { CloudletError } from '../../sandbox/client';
import { overlayEnded, overlayProgress } from '../state/panels';
import { finishOverlayPanel } from './overlay';

async function targetSandbox(ext: Ext, node: unknown, placeHolder: string, filter: (s: ServerInfo) => boolean): Promise<ServerInfo> {
  const s = await sessionOf(ext, LOCAL);
  if (isNode(node) && node.resourceId && (node.kind === 'sandbox' || node.kind === 'server')) return s.getServer(node.resourceId);
  return pickServer(ext, LOCAL, placeHolder, filter);
}

const terminals = new Map<string, vscode.Terminal>();

/**
 * Before a build: when cloudlet.yaml names a base the sandbox does not have, a quick pick of the
 * local bases writes the choice into the file (an edit, undoable), instead of a failed build.
 */
async function ensureYamlBase(s: CloudletSession, file: vscode.Uri): Promise<void> {
  const doc = await vscode.workspace.openTextDocument(file);
  const b = yamlBase(doc.getText());
  if (!b) return;  // the build says what is missing
  const bases = (await s.listImages()).filter(isBaseImage);
  if (bases.some((x) => baseMatches(x, b.value))) return;
  if (!bases.length) {
    throw new CloudletError('MissingBase', `cloudlet.yaml names base "${b.value}", and the sandbox has no base VM yet`, { hint: 'run "Cloudlet: Create Base VM..." (Test guest is the one the samples use)' });
  }
  const pick = need(await vscode.window.showQuickPick(bases.map((x) => ({ label: x.name, description: shortId(x.baseId), x })),
    { title: `cloudlet.yaml names base "${b.value}", which the sandbox does not have`, placeHolder: 'Use this local base (written into cloudlet.yaml)', ignoreFocusOut: true }));
  await setYamlBase(doc, pick.x.name);
}

/**
 * The quick fix on a cloudlet.yaml's base line: when it names a base the sandbox does not have,
 * "Use local base NAME" for each local base (the same edit as the build's quick pick).
 */
export function registerYamlQuickFix(ext: Ext): vscode.Disposable {
  return vscode.languages.registerCodeActionsProvider({ pattern: '**/cloudlet.yaml' }, {
    async provideCodeActions(doc, range) {
      const b = yamlBase(doc.getText());
      if (!b || range.start.line > b.line || range.end.line < b.line) return [];
      const bases = await sessionOf(ext, LOCAL).then((s) => s.listImages()).then((l) => l.filter(isBaseImage), () => []);
      if (!bases.length || bases.some((x) => baseMatches(x, b.value))) return [];
      return bases.map((x) => {
        const a = new vscode.CodeAction(`Use local base ${x.name} (${shortId(x.baseId)})`, vscode.CodeActionKind.QuickFix);
        a.edit = new vscode.WorkspaceEdit();
        a.edit.replace(doc.uri, new vscode.Range(b.line, b.start, b.line, b.end), x.name);
        return a;
      });
    },
  }, { providedCodeActionKinds: [vscode.CodeActionKind.QuickFix] });
}

/** Writes `base: NAME` into a cloudlet.yaml document and saves it. */
export async function setYamlBase(doc: vscode.TextDocument, name: string): Promise<void> {
  const b = yamlBase(doc.getText());
  if (!b) return;
  const edit = new vscode.WorkspaceEdit();
  edit.replace(doc.uri, new vscode.Range(b.line, b.start, b.line, b.end), name);
  await vscode.workspace.applyEdit(edit);
  await doc.save();
}

export const sandboxCommands: CommandDef[] = [
  {
    id: 'cloudlet.openTerminal',
    async run(ext, node?: unknown) {
      const vm = await targetSandbox(ext, node, 'Sandbox VM to open a terminal into', (x) => serverState(x.status) === 'running' || serverState(x.status) === 'paused');
      const open = terminals.get(vm.id);
      if (open && open.exitStatus === undefined) { open.show(); return; }
      const s = await sessionOf(ext, LOCAL);
      const pty = new SerialConsoleTerminal(vm.name, () => s.openConsole(vm.id));
      const t = vscode.window.createTerminal({ name: `Sandbox: ${vm.name}`, pty, iconPath: new vscode.ThemeIcon('vm') });
      terminals.set(vm.id, t);
      t.show();
    },
  },
  {
    id: 'cloudlet.pauseSandbox',
    async run(ext, node?: unknown) {
      const vm = await targetSandbox(ext, node, 'Sandbox VM to pause', (x) => serverState(x.status) === 'running');
      await (await sessionOf(ext, LOCAL)).pause(vm.id);
      ext.refresh('sandbox', true);
    },
  },
  {
    id: 'cloudlet.unpauseSandbox',
    async run(ext, node?: unknown) {
      const vm = await targetSandbox(ext, node, 'Sandbox VM to unpause', (x) => serverState(x.status) === 'paused');
      await (await sessionOf(ext, LOCAL)).unpause(vm.id);
      ext.refresh('sandbox', true);
    },
  },
  {
    id: 'cloudlet.stopSandbox',
    async run(ext, node?: unknown) {
      const vm = await targetSandbox(ext, node, 'Sandbox VM to stop and remove', () => true);
      const ok = await vscode.window.showWarningMessage(`Stop sandbox VM ${vm.name}? Its changes are lost unless you made an overlay.`, { modal: true }, 'Stop');
      if (ok !== 'Stop') return;
      await (await sessionOf(ext, LOCAL)).deleteServer(vm.id);
      terminals.get(vm.id)?.dispose();
      ext.refresh('sandbox', true);
    },
  },
  {
    id: 'cloudlet.buildFromWorkspace',
    async run(ext, uri?: unknown) {
      if (!vscode.workspace.isTrusted) {
        throw new CloudletError('Forbidden', 'Restricted Mode: building runs the install steps of this folder\'s cloudlet.yaml, so it needs a trusted folder',
          { hint: 'Workspaces: Manage Workspace Trust, then build again; everything else works in Restricted Mode' });
      }
      const files = uri instanceof vscode.Uri && uri.fsPath.endsWith('cloudlet.yaml') ? [uri] : await vscode.workspace.findFiles('**/cloudlet.yaml', '**/node_modules/**', 20);
      if (!files.length) {
        const pick = await vscode.window.showErrorMessage('No cloudlet.yaml in this workspace: it says which base VM to resume and how to install the back-end.', 'Open Walkthrough');
        if (pick) await vscode.commands.executeCommand('cloudlet.openWalkthrough');
        return;
      }
      const file = files.length === 1 ? files[0] : need(await vscode.window.showQuickPick(files.map((f) => ({ label: vscode.workspace.asRelativePath(f), f })), { placeHolder: 'Which cloudlet.yaml' })).f;
      const folder = path.dirname(file.fsPath);
      const name = path.basename(folder);
      const s = await sessionOf(ext, LOCAL);
      await ensureYamlBase(s, file);
      const key = `build:${folder}`;
      const panel = ext.overlayPanels.open(key, name);
      panel.update({ ...panel.current, title: name, status: 'running', phases: [], error: undefined, composition: undefined });
      const { jobId } = await s.buildFromWorkspace(folder, name);
      const external: { cancel?: () => void } = {};
      panel.cancel = () => external.cancel?.();
      const end = await runJob(s, jobId, `Building overlay ${name}`, (e) => panel.update(overlayProgress(panel.current, e)), external);
      panel.cancel = undefined;
      ext.refresh('overlays', true);
      ext.refresh('sandbox');
      if (end.status !== 'DONE') {
        panel.update(overlayEnded(panel.current, end));
        checkEnd(end, `Build of ${name}`);
      }
      await finishOverlayPanel(ext, s, panel, end, key);
      walkthroughDone('built');
    },
  },
];
