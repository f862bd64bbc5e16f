/** Cloudlet endpoints: add, remove, update credentials; refresh, log, focus. */
import * as vscode from 'vscode';
import { showError, type CommandDef } from './registry';
import { isNode, need, pickCloudlet } from './common';
import { LOCAL, validateCloudletName, validateUrl } from '../cloudlets';
import { CloudletError, discoverAuthUrl } from '../../sandbox/client';
import { askable, askToTrust, pinKey, refusalOf, withTrust } from './trust';
import { showDoc } from './setup';

const CREDENTIALS_WHERE = 'Users come from the cloudlet\'s operator (the daemon\'s --config file, or the fleet\'s Keystone).';

const CREDENTIALS_DOC = [
  '# Where cloudlet credentials come from',
  '',
  '- **The local sandbox** needs none from you: its daemon writes a random password for its `admin` user to',
  '  `admin.password` in its data folder (`~/.local/share/cloudlet` by default) on first start, and the extension reads it.',
  '- **A remote cloudlet** (`cloudlet serve` or `cloudlet service install` on another host) has the users of its',
  '  `--config FILE` (`users:` with name, password and roles per project); its `admin.password` holds the admin\'s password.',
  '  Ask its operator for a user; give it as `user@project` when the project has another name.',
  '- **A fleet** (cloudlets as regions of one Keystone): your Keystone user and project. One login shows every region.',
  '',
  'Passwords are kept in VS Code\'s secret storage, never in settings. "Cloudlet: Update Credentials..." changes them.',
  '',
].join('\n');

/** The password input, with a (?) button that explains where credentials come from. */
function askPassword(title: string, username: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const box = vscode.window.createInputBox();
    box.title = title;
    box.prompt = `Password of ${username} (kept in VS Code's secret storage). ${CREDENTIALS_WHERE} (?) explains.`;
    box.password = true;
    box.ignoreFocusOut = true;
    const help: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon('question'), tooltip: 'Where do credentials come from?' };
    box.buttons = [help];
    let done = false;
    const finish = (v: string | undefined) => { if (!done) { done = true; resolve(v); box.dispose(); } };
    box.onDidTriggerButton((b) => { if (b === help) void vscode.commands.executeCommand('cloudlet.explainCredentials'); });
    box.onDidAccept(() => finish(box.value));
    box.onDidHide(() => finish(undefined));
    box.show();
  });
}

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
      const username = need(await vscode.window.showInputBox({ title: 'Add Cloudlet (3/4)', prompt: `User name (and project as user@project). ${CREDENTIALS_WHERE}`, value: 'admin', ignoreFocusOut: true, validateInput: (v) => (v.trim() ? undefined : 'A user name is needed') }));
      const password = need(await askPassword(`Add Cloudlet (4/4)`, username));
      const [user, project] = username.includes('@') ? username.split('@', 2) : [username, username];
      await ext.cloudlets.add({ name, url, username: user, project, ...(Object.keys(pins).length ? { pins } : {}) }, password);
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
      const username = need(await vscode.window.showInputBox({ title: `Credentials of ${name}`, prompt: 'User name', value: c.username, ignoreFocusOut: true }));
      const password = need(await askPassword(`Credentials of ${name}`, username));
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
