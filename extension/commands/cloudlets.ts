/** Cloudlet endpoints: add, remove, update credentials; refresh, log, focus. */
import * as vscode from 'vscode';
import { showError, type CommandDef } from './registry';
import { isNode, need, pickCloudlet } from './common';
import { LOCAL, validateCloudletName, validateUrl } from '../cloudlets';
import { CloudletError } from '../../sandbox/client';

export const cloudletCommands: CommandDef[] = [
  {
    id: 'cloudlet.addCloudlet',
    async run(ext) {
      const existing = ext.cloudlets.list();
      const url = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (1/4)', prompt: 'URL of the cloudlet daemon', placeHolder: 'http://127.0.0.2:8774', ignoreFocusOut: true, validateInput: validateUrl }));
      const suggested = (() => { try { return new URL(url).hostname.replace(/[^\w.-]/g, '-'); } catch { return ''; } })();
      const name = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (2/4)', prompt: 'A name for it', value: existing.some((c) => c.name === suggested) ? '' : suggested, ignoreFocusOut: true, validateInput: (v) => validateCloudletName(v, existing) }));
      const username = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (3/4)', prompt: 'User name (and project as user@project)', value: 'admin', ignoreFocusOut: true, validateInput: (v) => (v.trim() ? undefined : 'A user name is needed') }));
      const password = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (4/4)', prompt: `Password of ${username} (kept in VS Code's secret storage)`, password: true, ignoreFocusOut: true }));
      const [user, project] = username.includes('@') ? username.split('@', 2) : [username, username];
      await ext.cloudlets.add({ name, url, username: user, project }, password);
      ext.watchAll();
      ext.refresh('cloudlets', true);
      // Check the credentials now, so a typo shows at once (with "Update Credentials").
      try {
        const s = await ext.session(name);
        await s.listServers();
        void vscode.window.showInformationMessage(`Cloudlet ${name} added.`);
      } catch (e) {
        // Added all the same (it may come up later); say what is wrong, Retry re-checks the connection.
        await showError(ext, e, { where: name, cloudlet: name, retry: () => vscode.commands.executeCommand('cloudlet.refresh') });
      }
    },
  },
  {
    id: 'cloudlet.removeCloudlet',
    async run(ext, node?: unknown) {
      const name = isNode(node) && node.cloudlet ? node.cloudlet : await pickCloudlet(ext, 'Cloudlet to remove');
      const ok = await vscode.window.showWarningMessage(`Remove cloudlet ${name} from the list? Nothing on it is deleted.`, { modal: true }, 'Remove');
      if (ok !== 'Remove') return;
      await ext.cloudlets.remove(name);
      ext.watchAll();
      ext.refresh('cloudlets', true);
    },
  },
  {
    id: 'cloudlet.updateCredentials',
    async run(ext, arg?: unknown) {
      const name = typeof arg === 'string' ? arg : isNode(arg) && arg.cloudlet ? arg.cloudlet : await pickCloudlet(ext, 'Cloudlet whose credentials to change');
      if (name === LOCAL) throw new CloudletError('BadInput', 'The local daemon\'s credentials come from its data folder (admin.password)');
      const c = ext.cloudlets.find(name);
      if (!c) throw new CloudletError('NotFound', `No cloudlet named ${name}`);
      const username = need(await vscode.window.showInputBox({ title: `Credentials of ${name}`, prompt: 'User name', value: c.username, ignoreFocusOut: true }));
      const password = need(await vscode.window.showInputBox({ title: `Credentials of ${name}`, prompt: `Password of ${username}`, password: true, ignoreFocusOut: true }));
      await ext.cloudlets.updateCredentials(name, username, password);
      ext.watchAll();
      ext.refresh('cloudlets', true);
    },
  },
  {
    id: 'cloudlet.refresh',
    run(ext) {
      ext.cloudlets.forget();
      ext.watchAll();
      ext.refresh(undefined, true);
    },
  },
  { id: 'cloudlet.showLog', run(ext) { ext.output.channel.show(true); } },
  { id: 'cloudlet.focusSandbox', async run() { await vscode.commands.executeCommand('cloudlet.sandbox.focus'); } },
  {
    id: 'cloudlet.openWalkthrough',
    async run(ext) {
      await vscode.commands.executeCommand('workbench.action.openWalkthrough', `${ext.context.extension.id}#cloudlet.firstOverlay`, false);
    },
  },
];
