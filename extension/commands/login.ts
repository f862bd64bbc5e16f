/**
 * How the user logs in to a cloudlet, asked by Add Cloudlet and Update Credentials: a user and its
 * password, or (the key button of the user input) an application credential by ID, or by name and
 * owner, with its secret. Secrets go to SecretStorage (extension/cloudlets.ts), never to settings.
 */
import * as vscode from 'vscode';
import { need } from './common';
import { validateLogin } from '../cloudlets';
import type { ApplicationCredentialRef } from '../api';

export const CREDENTIALS_WHERE = 'Users come from the cloudlet\'s operator (the daemon\'s --config file, or the fleet\'s Keystone).';

export const CREDENTIALS_DOC = [
  '# Where cloudlet credentials come from',
  '',
  '- **The local sandbox** needs none from you: its daemon writes a random password for its `admin` user to',
  '  `admin.password` in its data folder (`~/.local/share/cloudlet` by default) on first start, and the extension reads it.',
  '- **A remote cloudlet** (`cloudlet serve` or `cloudlet service install` on another host) has the users of its',
  '  `--config FILE` (`users:` with name, password and roles per project); its `admin.password` holds the admin\'s password.',
  '  Ask its operator for a user; give it as `user@project` when the project has another name.',
  '- **A fleet** (cloudlets as regions of one Keystone): your Keystone user and project. One login shows every region.',
  '- **An application credential** (the key button of the user name input) instead of a password: what',
  '  `openstack application credential create NAME` prints (its `id` and `secret`), made by you at the cloudlet or',
  '  the fleet\'s Keystone. It fixes the project and may carry fewer roles than you have; deleting it cuts the editor off.',
  '',
  'Passwords and secrets are kept in VS Code\'s secret storage, never in settings. "Cloudlet: Update Credentials..." changes them.',
  '',
].join('\n');

/** A login the user gave: a user (with its project, when named as user@project) or an application credential, and the secret. */
export interface LoginAnswer {
  username: string;
  project?: string;
  applicationCredential?: ApplicationCredentialRef;
  secret: string;
}

const APP_CRED = Symbol('application credential');

function helpButton(): vscode.QuickInputButton {
  return { iconPath: new vscode.ThemeIcon('question'), tooltip: 'Where do credentials come from?' };
}

/** A password-style input (its value hidden) with the (?) button. */
export function askSecret(title: string, prompt: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const box = vscode.window.createInputBox();
    box.title = title;
    box.prompt = prompt;
    box.password = true;
    box.ignoreFocusOut = true;
    const help = helpButton();
    box.buttons = [help];
    let done = false;
    const finish = (v: string | undefined) => { if (!done) { done = true; resolve(v); box.dispose(); } };
    box.onDidTriggerButton((b) => { if (b === help) void vscode.commands.executeCommand('cloudlet.explainCredentials'); });
    box.onDidAccept(() => finish(box.value));
    box.onDidHide(() => finish(undefined));
    box.show();
  });
}

export function askPassword(title: string, username: string): Promise<string | undefined> {
  return askSecret(title, `Password of ${username} (kept in VS Code's secret storage). ${CREDENTIALS_WHERE} (?) explains.`);
}

/** The user name input; its key button answers "an application credential instead". */
function askUser(title: string, value: string): Promise<string | typeof APP_CRED | undefined> {
  return new Promise((resolve) => {
    const box = vscode.window.createInputBox();
    box.title = title;
    box.prompt = `User name (and project as user@project) for a password login, or the key button for an application credential. ${CREDENTIALS_WHERE}`;
    box.value = value;
    box.ignoreFocusOut = true;
    const key: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon('key'), tooltip: 'Log in with an application credential instead' };
    const help = helpButton();
    box.buttons = [key, help];
    let done = false;
    const finish = (v: string | typeof APP_CRED | undefined) => { if (!done) { done = true; resolve(v); box.dispose(); } };
    box.onDidChangeValue((v) => { box.validationMessage = v.trim() ? undefined : 'A user name is needed'; });
    box.onDidTriggerButton((b) => {
      if (b === key) finish(APP_CRED);
      else if (b === help) void vscode.commands.executeCommand('cloudlet.explainCredentials');
    });
    box.onDidAccept(() => { if (box.value.trim()) finish(box.value.trim()); });
    box.onDidHide(() => finish(undefined));
    box.show();
  });
}

/** An application credential by ID, or by name and owner; then its secret. */
async function askApplicationCredential(title: string, current: { username: string; applicationCredential?: ApplicationCredentialRef }): Promise<LoginAnswer> {
  const t = `${title}: application credential`;
  const how = need(await vscode.window.showQuickPick([
    { label: 'By ID', detail: 'the id that `openstack application credential create` printed', v: 'id' as const },
    { label: 'By name and user', detail: 'its name, and the user who made it', v: 'name' as const },
  ], { title: t, placeHolder: 'How is the application credential named?', ignoreFocusOut: true })).v;
  let ref: ApplicationCredentialRef;
  let username = '';
  if (how === 'id') {
    const id = need(await vscode.window.showInputBox({ title: t, prompt: 'ID of the application credential', value: current.applicationCredential?.id ?? '', ignoreFocusOut: true,
      validateInput: (v) => validateLogin({ username: '', applicationCredential: { id: v } }) }));
    ref = { id: id.trim() };
  } else {
    const name = need(await vscode.window.showInputBox({ title: t, prompt: 'Name of the application credential', value: current.applicationCredential?.name ?? '', ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : 'A name is needed') }));
    username = need(await vscode.window.showInputBox({ title: t, prompt: `User who owns application credential ${name}`, value: current.username, ignoreFocusOut: true,
      validateInput: (v) => validateLogin({ username: v, applicationCredential: { name } }) })).trim();
    ref = { name };
  }
  const secret = need(await askSecret(t, `Secret of application credential ${ref.id ?? ref.name} (kept in VS Code's secret storage; \`openstack application credential create\` shows it once). (?) explains.`));
  return { username, applicationCredential: ref, secret };
}

/**
 * Asks for a login: the user name input (title `title(3)`), then the password (`title(4)`); or, by
 * the input's key button, an application credential. `current` prefills the answers.
 */
export async function askLogin(title: (step: number) => string, current: { username: string; applicationCredential?: ApplicationCredentialRef }): Promise<LoginAnswer> {
  const user = need(await askUser(title(3), current.username || 'admin'));
  if (user === APP_CRED) return askApplicationCredential(title(3), current);
  const [username, project] = user.includes('@') ? user.split('@', 2) : [user, undefined];
  return { username, project, secret: need(await askPassword(title(4), username)) };
}
