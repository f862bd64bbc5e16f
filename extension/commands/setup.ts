/**
 * Getting the local daemon to run without a terminal: the install steps, "Locate CLI..." and
 * "Locate Node.js..." file pickers (saved as user settings), and the status bar's "what is wrong
 * and how to fix it".
 */
import * as cp from 'child_process';
import * as fs from 'fs';
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import { need } from './common';
import { which } from '../localDaemon';
import { localDaemonSettings } from '../settings';
import { installStepsMarkdown, missingToolSummary } from '../state/install';
import { CloudletError } from '../../sandbox/client';
import type { Ext } from '../ext';

function version(ext: Ext): string {
  return String((ext.context.extension.packageJSON as { version?: string }).version ?? 'X.Y.Z');
}

/** Runs `node cli --version` to check a picked file is the cloudlet CLI; returns its version. */
function cliVersion(node: string, cli: string, nodeArgs: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    cp.execFile(node, [...nodeArgs, cli, '--version'], { timeout: 60_000, env: { ...process.env, CLOUDLET_CLI_MAIN: '1' } }, (err, stdout, stderr) => {
      const v = stdout.trim();
      if (err || !/^\d+\.\d+\.\d+/.test(v)) {
        reject(new CloudletError('BadInput', `${cli} is not the cloudlet CLI: "${[v, stderr.trim()].filter(Boolean).join(' ').slice(0, 200) || err?.message}"`,
          { hint: 'pick bin/cloudlet of the installed toolkit (npm prefix -g shows where global packages go)' }));
      } else resolve(v);
    });
  });
}

async function pickExecutable(title: string, openLabel: string): Promise<string> {
  const files = need(await vscode.window.showOpenDialog({ title, openLabel, canSelectMany: false, canSelectFiles: true, canSelectFolders: false,
    defaultUri: vscode.Uri.file(process.env.HOME ?? '/') }));
  const file = files[0].fsPath;
  try { fs.accessSync(file, fs.constants.X_OK); } catch {
    throw new CloudletError('BadInput', `${file} is not an executable file`);
  }
  if (!fs.statSync(file).isFile()) throw new CloudletError('BadInput', `${file} is not a file`);
  return file;
}

const docs = new Map<string, string>();
let docProvider: vscode.Disposable | undefined;

/**
 * Shows generated Markdown read-only (scheme cloudlet-doc: never a dirty untitled file that asks to be
 * saved), rendered by the Markdown preview when it is there.
 */
export async function showDoc(ext: Ext, name: string, markdown: string): Promise<void> {
  if (!docProvider) {
    docProvider = vscode.workspace.registerTextDocumentContentProvider('cloudlet-doc', { provideTextDocumentContent: (uri) => docs.get(uri.path) ?? '' });
    ext.context.subscriptions.push(docProvider, { dispose: () => { docProvider = undefined; } });
  }
  const uri = vscode.Uri.from({ scheme: 'cloudlet-doc', path: `/${name}` });
  docs.set(uri.path, markdown);
  const doc = await vscode.workspace.openTextDocument(uri);
  await vscode.languages.setTextDocumentLanguage(doc, 'markdown');
  await vscode.window.showTextDocument(doc, { preview: true });
}

export const setupCommands: CommandDef[] = [
  {
    id: 'cloudlet.showInstallSteps',
    async run(ext) {
      await showDoc(ext, 'install-steps.md', installStepsMarkdown(version(ext), ext.sandboxProblem?.missing));
    },
  },
  {
    id: 'cloudlet.locateCli',
    async run(ext) {
      const file = await pickExecutable('Locate the cloudlet CLI (bin/cloudlet of the installed toolkit)', 'Use This CLI');
      const s = localDaemonSettings();
      const node = s.nodePath || which('node');
      if (!node) throw new CloudletError('MissingTool', 'No Node.js found on PATH to run the CLI', { hint: 'run "Cloudlet: Locate Node.js..." first' });
      const v = await cliVersion(node, fs.realpathSync(file), s.nodeArgs);
      await vscode.workspace.getConfiguration('cloudlet').update('cliPath', file, vscode.ConfigurationTarget.Global);
      ext.output.info(`cloudlet.cliPath set to ${file} (cloudlet ${v})`);
      void vscode.window.showInformationMessage(`Using the cloudlet CLI ${v} at ${file}. Starting the local sandbox daemon…`);
      ext.refresh(undefined, true);
    },
  },
  {
    id: 'cloudlet.locateNode',
    async run(ext) {
      const file = await pickExecutable('Locate Node.js (20 or newer) for the local sandbox daemon', 'Use This Node.js');
      const v = await new Promise<string>((resolve, reject) => cp.execFile(file, ['--version'], { timeout: 20_000 }, (err, out) => {
        const m = /^v(\d+)\./.exec(out.trim());
        if (err || !m) reject(new CloudletError('BadInput', `${file} is not Node.js`));
        else if (Number(m[1]) < 20) reject(new CloudletError('BadInput', `${file} is Node.js ${out.trim()}; the daemon needs 20 or newer`));
        else resolve(out.trim());
      }));
      await vscode.workspace.getConfiguration('cloudlet').update('nodePath', file, vscode.ConfigurationTarget.Global);
      ext.output.info(`cloudlet.nodePath set to ${file} (${v})`);
      ext.refresh(undefined, true);
    },
  },
  {
    id: 'cloudlet.showDaemonStatus',
    async run(ext) {
      const p = ext.sandboxProblem;
      const what = missingToolSummary(p?.missing, p?.missing ? undefined : p?.message);
      const fixes = p?.missing === 'node' || p?.missing === 'nodePath' ? ['Show Install Steps', 'Locate Node.js...']
        : p?.missing ? ['Show Install Steps', 'Locate CLI...'] : ['Retry', 'Show Log'];
      const detail = p?.missing ? `${p.message}.\nFix: install the toolkit (Show Install Steps) or pick an installed one (Locate).` : 'Fix: Retry restarts it; the log has its last output.';
      const choice = await vscode.window.showWarningMessage(`Local sandbox: ${what}`, { modal: true, detail }, ...fixes);
      const command: Record<string, string> = {
        'Show Install Steps': 'cloudlet.showInstallSteps', 'Locate CLI...': 'cloudlet.locateCli', 'Locate Node.js...': 'cloudlet.locateNode',
        Retry: 'cloudlet.refresh', 'Show Log': 'cloudlet.showLog',
      };
      if (choice && command[choice]) await vscode.commands.executeCommand(command[choice]);
    },
  },
];
