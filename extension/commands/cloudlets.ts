/** Cloudlet endpoints: add, remove, update credentials; refresh, log, focus. */
import * as vscode from 'vscode';
import { showError, type CommandDef } from './registry';
import { isNode, need, pickCloudlet } from './common';
import { LOCAL, validateCloudletName, validateUrl } from '../cloudlets';
import { CloudletError, discoverAuthUrl } from '../../sandbox/client';
import { askable, askToTrust, pinKey, refusalOf, withTrust } from './trust';
import { showDoc } from './setup';
import { askLogin, CREDENTIALS_DOC } from './login';

/** Asks about the certificate of an https:// URL no trusted CA signed; returns the pins the user accepted. */
async function firstUseTrust(url: string): Promise<Record<string, string>> {
  const pins: Record<string, string> = {};
  for (let round = 0; round < 3; round++) {
    try {
      await discoverAuthUrl(url, { tls: Object.keys(pins).length ? { pins } : undefined, timeoutMs: 15_000 });
      return pins;
    } catch (e) {
      const r = refusalOf(e);
      if (!askable(r)) throw e;
      if (!(await askToTrust(r, url))) throw new CloudletError('Untrusted', `the certificate of ${r.host} was not trusted: nothing was added`);
      pins[pinKey(r.host)] = r.presented.fingerprint;
    }
  }
  return pins;
}

export const cloudletCommands: CommandDef[] = [
  {
    id: 'cloudlet.addCloudlet',
    async run(ext) {
      const existing = ext.cloudlets.list();
      const url = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (1/4)', prompt: 'URL of the cloudlet daemon, or of a fleet\'s Keystone (one login, every region a cloudlet)', placeHolder: 'https://edge1.example.org:8774', ignoreFocusOut: true, validateInput: validateUrl })).trim();
      const pins = url.startsWith('https:') ? await firstUseTrust(url) : {};
      const suggested = (() => { try { return new URL(url).hostname.replace(/[^\w.-]/g, '-'); } catch { return ''; } })();
      const name = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (2/4)', prompt: 'A name for it', value: existing.some((c) => c.name === suggested) ? '' : suggested, ignoreFocusOut: true, validateInput: (v) => validateCloudletName(v, existing) }));
      // A user and password, or (the user input's key button) an application credential.
      const login = await askLogin((n) => `Add Cloudlet (${n}/4)`, { username: 'admin' });
      const who = login.applicationCredential
        ? { username: login.username, project: '', applicationCredential: login.applicationCredential }
        : { username: login.username, project: login.project ?? login.username };
      await ext.cloudlets.add({ name, url, ...who, ...(Object.keys(pins).length ? { pins } : {}) }, login.secret);
      ext.watchAll();
      ext.refresh('cloudlets', true);
      // Check the credentials now, so a typo shows at once (with "Update Credentials").
      try {
        await withTrust(ext, name, async () => (await ext.session(name)).listServers());
        ext.watchAll();
        ext.refresh('cloudlets', true);
        void vscode.window.showInformationMessage(`Cloudlet ${name} added${Object.keys(pins).length ? ' (its certificate is pinned)' : ''}.`);
      } catch (e) {
        // Added all the same (it may come up later); say what is wrong, Retry re-checks the connection.
        await showError(ext, e, { where: name, cloudlet: name, retry: () => vscode.commands.executeCommand('cloudlet.refresh') });
      }
    },
  },
  {
    id: 'cloudlet.trustCertificate',
    async run(ext, arg?: unknown) {
      const name = typeof arg === 'string' ? arg : isNode(arg) && arg.cloudlet ? arg.cloudlet : await pickCloudlet(ext, 'Cloudlet whose certificate to check');
      await withTrust(ext, name, async () => (await ext.session(name)).listServers());
      ext.watchAll();
      ext.refresh(undefined, true);
      void vscode.window.showInformationMessage(`Cloudlet ${name}: its certificate is trusted.`);
    },
  },
  {
    id: 'cloudlet.explainCredentials',
    async run(ext) {
      await showDoc(ext, 'credentials.md', CREDENTIALS_DOC);
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
      const login = await askLogin(() => `Credentials of ${name}`, c);
      await ext.cloudlets.updateCredentials(name, login, login.secret);
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
