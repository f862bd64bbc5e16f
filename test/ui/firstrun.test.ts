/**
 * A new user's first run in real VS Code (code-server), through the editor alone: an empty profile
 * and no `cloudlet` on PATH. The Sandbox view says exactly what is missing; the status bar's click
 * gives the reason and the fix; the install steps name the command that works; "Locate CLI..." picks
 * the installed CLI in the file dialog and the local daemon starts from it. Then an HTTPS cloudlet
 * with a self-signed certificate: its fingerprint is shown and asked once, the pin is saved, and
 * after the cloudlet's certificate changes the connection is refused loudly (issue 15, issue 17.3).
 * Create Base VM... with its three kinds: a bad disk image fails with the CLI's words in a
 * notification and the log; the test guest becomes a base in the Sandbox view (issue 12.3, 17.1).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Browser } from 'playwright-core';
import { ROOT, Workbench, ensureVsix, freePort, launchBrowser, startCodeServer, stepFlow, until, useInstalledCli, type CodeServer } from './harness';
import { killProcessesUsing, startDaemon, TEST_USERS, type TestDaemon } from '../integration/fixtures/daemon';
import { CloudletClient } from '../../sandbox/client';

describe('first run in real VS Code: no CLI on PATH, then an HTTPS cloudlet trusted on first use', function () {
  let cs: CodeServer;
  let browser: Browser;
  let wb: Workbench;
  let workspace: string;
  let localData: string;
  let cli: string;
  let edge1: TestDaemon;
  let version: string;
  let xdg: string;
  const screenshots: string[] = [];
  const shot = async (name: string) => { screenshots.push(await wb.shot(`firstrun-${name}`)); };
  const dialog = () => wb.page.locator('.monaco-dialog-box').first();

  before(async function () {
    this.timeout(1_200_000);
    const vsix = ensureVsix();
    cli = await useInstalledCli();
    version = (JSON.parse(fs.readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as { version: string }).version;
    edge1 = await startDaemon({ ip: '127.0.0.2', args: ['--tls-self-signed'] });
    assert.ok(edge1.fingerprint, 'the daemon printed its certificate fingerprint');
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-first-ws-'));
    localData = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-first-local-'));
    // The installed CLI keeps built guests in XDG_CACHE_HOME/cloudlet: the checkout's (set-up built them once).
    xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-first-xdg-'));
    fs.mkdirSync(path.join(xdg, 'cloudlet'));
    for (const g of ['guest', 'debian']) if (fs.existsSync(path.join(ROOT, '.cache', g))) fs.symlinkSync(path.join(ROOT, '.cache', g), path.join(xdg, 'cloudlet', g));
    // PATH without any `cloudlet`: node and the system tools only.
    const pathDirs = [path.dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'].filter((d) => !fs.existsSync(path.join(d, 'cloudlet')));
    cs = await startCodeServer({
      workspace,
      vsix,
      env: { PATH: [...new Set(pathDirs)].join(path.delimiter), XDG_CACHE_HOME: xdg },
      // An empty profile but for where the local daemon listens and keeps its data (not the user's own).
      settings: { 'cloudlet.localDaemon.listen': `127.0.0.1:${await freePort()}`, 'cloudlet.localDaemon.dataDir': localData },
    });
    browser = await launchBrowser();
    wb = await Workbench.open(browser, cs);
  });

  after(async function () {
    this.timeout(120_000);
    await browser?.close().catch(() => {});
    await cs?.stop().catch(() => {});
    await edge1?.stop().catch(() => {});
    if (localData) { killProcessesUsing(localData); fs.rmSync(localData, { recursive: true, force: true }); }
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
    if (xdg) fs.rmSync(xdg, { recursive: true, force: true });
    if (screenshots.length) console.log(`screenshots:\n  ${screenshots.join('\n  ')}`);
  });

  stepFlow('firstrun', () => ({ wb, cs }));

  /** Answers code-server's file dialog (a path input prefilled with a folder) like a user: select all, type, Enter. */
  async function pickFile(file: string): Promise<void> {
    const input = wb.page.locator('.quick-input-widget:visible .quick-input-box input');
    await input.waitFor({ timeout: 30_000 });
    await input.click();
    await wb.page.keyboard.press('Control+a');
    await wb.page.keyboard.type(file, { delay: 5 });
    await until('the dialog to show the file', async () => (await input.inputValue()) === file, 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    await input.press('Enter');
  }

  it('17.3: no CLI on PATH: the Sandbox view names what is missing and offers the install steps and "Locate CLI..."', async () => {
    await wb.openCloudlets();
    const welcome = wb.viewPane('Sandbox').locator('.welcome-view-content');
    await welcome.filter({ hasText: 'Missing: the cloudlet CLI' }).waitFor({ timeout: 120_000 });
    assert.match(await welcome.innerText(), /not on PATH, and cloudlet\.cliPath is empty/);
    assert.doesNotMatch(await welcome.innerText(), /npm install -g cloudlet-toolkit\b/);
    // 17.11: nothing clipped: every button of the welcome is inside the view.
    const pane = await wb.viewPane('Sandbox').locator('.pane-body').first().boundingBox();
    await welcome.locator('a', { hasText: 'retry' }).first().waitFor();
    for (const b of ['Show Install Steps', 'Locate CLI...']) {
      const btn = welcome.locator('.monaco-button', { hasText: b }).first();
      await btn.waitFor();
      const box = await btn.boundingBox();
      assert.ok(pane && box && box.y + box.height <= pane.y + pane.height + 1, `${b} is not cut off`);
    }
    await shot('missing-cli');
  });

  it('17.3: the status bar says set-up is needed; its click gives the reason and the fix', async () => {
    const item = wb.page.locator('.statusbar-item', { hasText: 'Sandbox: set-up needed' }).first();
    await item.waitFor({ timeout: 60_000 });
    await item.click();
    await dialog().waitFor({ timeout: 30_000 });
    const text = await dialog().innerText();
    assert.match(text, /cloudlet CLI is not on PATH/);
    assert.match(text, /Fix:/);
    await shot('status-reason');
    await dialog().locator('.monaco-button', { hasText: 'Show Install Steps' }).click();
    const editor = wb.page.locator('.editor-instance .view-lines').first();
    await until('the install steps', async () => (await editor.innerText().catch(() => '')).includes('allow-scripts'), 60_000);
    const steps = (await editor.innerText()).replace(/\u00a0/g, ' ');
    assert.ok(steps.includes(`npm install -g --allow-scripts=better-sqlite3,zstd-napi ./cloudlet-toolkit-${version}.tgz`), steps);
    assert.match(steps, /npm run package/);
    await shot('install-steps');
    await wb.command('View: Close All Editors');
  });

  it('15.2/17.3: "Locate CLI..." picks the installed CLI in the file dialog; the local daemon starts from it', async () => {
    await wb.viewPane('Sandbox').locator('.welcome-view-content .monaco-button', { hasText: 'Locate CLI...' }).first().click();
    // code-server's file dialog is a path input: type the file (its real path: the bin entry is a symlink).
    const picked = fs.realpathSync(cli);
    await pickFile(picked);
    await wb.notification(/Using the cloudlet CLI/).waitFor({ timeout: 120_000 });
    // The sandbox is up and empty: the welcome that offers a base VM.
    await wb.viewPane('Sandbox').locator('.welcome-view-content', { hasText: 'No base VM in the sandbox yet' }).waitFor({ timeout: 180_000 });
    const user = JSON.parse(fs.readFileSync(cs.userSettings, 'utf8')) as Record<string, unknown>;
    assert.equal(user['cloudlet.cliPath'], picked);
    assert.ok(fs.existsSync(path.join(localData, 'admin.password')), 'the daemon made its data folder');
    await wb.page.locator('.statusbar-item', { hasText: /\$\(vm-outline\)|Sandbox/ }).first().waitFor();
    assert.equal(await wb.page.locator('.statusbar-item', { hasText: 'set-up needed' }).count(), 0);
    await shot('cli-located');
  });

  it('12.3/17.1: Create Base VM... offers the test guest, Debian 12 and a disk image; a bad image fails in a notification and the log', async () => {
    await wb.clearNotifications();
    const junk = path.join(workspace, 'not-a-disk.qcow2');
    fs.writeFileSync(junk, 'this is not a disk image\n'.repeat(100));
    await wb.command('Cloudlet: Create Base VM...');
    for (const k of ['Test guest', 'Debian 12', 'Disk image file...']) await wb.page.locator('.quick-input-widget:visible .quick-input-list .monaco-list-row', { hasText: k }).first().waitFor({ timeout: 30_000 });
    await shot('create-base-kinds');
    await wb.pick('Disk image file...');
    await pickFile(junk);
    // The name input, not the file dialog still closing.
    await wb.page.locator('.quick-input-widget:visible .quick-input-title', { hasText: 'Create Base VM (2/2)' }).waitFor({ timeout: 30_000 });
    await wb.answer('junk');
    const failed = wb.notification(/Creating base VM junk .* failed/);
    await failed.waitFor({ timeout: 300_000 });
    assert.doesNotMatch(await failed.innerText(), /exit code \d+/, 'the daemon\'s words, not an exit code');
    await failed.locator('.monaco-button', { hasText: 'Show Log' }).click();
    // Monaco renders spaces as no-break spaces.
    await until('the failure in the log', async () => /Creating base VM junk .* failed/.test((await wb.page.locator('.part.panel').first().innerText().catch(() => '')).replace(/\u00a0/g, ' ')), 60_000);
    await shot('create-base-failed');
    assert.equal(await wb.treeRow('Sandbox', 'junk').count(), 0, 'nothing half-made in the sandbox');
    await wb.closeBottomPanel();
  });

  it('12.3/17.1: Create Base VM... Test guest: progress with Cancel, then the base is in the Sandbox view', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Create Base VM...');
    await wb.pick('Test guest');
    await wb.answer('test-guest');
    const progress = wb.notification(/Creating base VM test-guest/);
    await progress.waitFor({ timeout: 60_000 });
    await progress.locator('.monaco-button', { hasText: 'Cancel' }).first().waitFor({ timeout: 30_000 });
    await shot('create-base-progress');
    await wb.treeRow('Sandbox', 'test-guest').first().waitFor({ timeout: 900_000 });
    await wb.notification(/Base VM test-guest created/).waitFor({ timeout: 60_000 });
    assert.equal(await wb.page.locator('.notifications-toasts .notification-toast', { hasText: /Creating base VM test-guest/ }).count(), 0, 'the progress ended with its outcome');
    await shot('create-base-done');
  });

  it('15.1/17.7: Add Cloudlet to an HTTPS cloudlet shows its certificate fingerprint, asks once, and pins it', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Add Cloudlet...');
    await wb.answer(edge1.url);
    await dialog().waitFor({ timeout: 60_000 });
    const text = await dialog().innerText();
    assert.match(text, /not signed by a CA this editor trusts/);
    assert.ok(text.includes(edge1.fingerprint!), `the dialog shows the fingerprint ${edge1.fingerprint}:\n${text}`);
    await shot('tofu-question');
    await dialog().locator('.monaco-button', { hasText: 'Trust This Certificate' }).click();
    await wb.answer('edge1');
    // 17.7: where credentials come from is said in the input itself.
    const prompt = wb.page.locator('.quick-input-widget:visible .quick-input-message');
    await until('the user name prompt', async () => /operator/.test(await prompt.innerText().catch(() => '')), 30_000);
    await wb.answer('alice@demo');
    await until('the password prompt explains', async () => /secret storage.*operator/.test(await prompt.innerText().catch(() => '')), 30_000);
    await wb.answer(TEST_USERS.alice);
    await wb.notification(/Cloudlet edge1 added \(its certificate is pinned\)/).waitFor({ timeout: 120_000 });
    await wb.treeRow('Cloudlets', /No servers or base VMs yet/).first().waitFor({ timeout: 60_000 });
    const user = JSON.parse(fs.readFileSync(cs.userSettings, 'utf8')) as { 'cloudlet.cloudlets': { name: string; pins?: Record<string, string> }[] };
    const saved = user['cloudlet.cloudlets'].find((c) => c.name === 'edge1');
    assert.deepEqual(Object.values(saved?.pins ?? {}), [edge1.fingerprint]);
    assert.equal(await dialog().count(), 0, 'asked once: no second question for the login');
    await shot('tofu-pinned');
  });

  it('17.2: Copy Base to Cloudlet... is explained as admin-only for a member; as admin it copies the base, verified there', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Copy Base to Cloudlet...');
    await wb.notification(/Only an admin of edge1 can add a base VM/).waitFor({ timeout: 60_000 });
    await shot('copy-base-not-admin');
    await wb.clearNotifications();
    await wb.command('Cloudlet: Update Credentials...');
    await wb.answer('admin');
    await wb.answer(TEST_USERS.admin);
    await wb.treeRow('Cloudlets', /No servers or base VMs yet/).first().waitFor({ timeout: 60_000 });
    await wb.command('Cloudlet: Copy Base to Cloudlet...');
    await wb.notification(/Base VM test-guest is on edge1 \(verified there\)/).waitFor({ timeout: 600_000 });
    await wb.treeRow('Cloudlets', 'test-guest').first().waitFor({ timeout: 60_000 });
    await shot('copy-base-done');
  });

  it('17.4: a change made while the event stream was down shows once the cloudlet is back, without Refresh', async () => {
    await edge1.restart();
    // Right after the restart, before the extension's stream reconnects (it waits 2 s and more): the base image goes.
    const admin = await CloudletClient.login({ authUrl: edge1.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin', tls: edge1.trust });
    for (const b of await admin.listBases()) await admin.deleteImage(b.id);
    await until('edge1 listed again without its base', async () => (await wb.treeRow('Cloudlets', /No servers or base VMs yet/).count()) > 0
      && (await wb.treeRow('Cloudlets', 'test-guest').count()) === 0, 180_000);
    await shot('relisted-after-restart');
  });

  it('15.1: after the cloudlet\'s certificate changes, the connection is refused loudly (no question)', async () => {
    await wb.clearNotifications();
    const old = edge1.fingerprint;
    await edge1.kill('SIGTERM');
    fs.rmSync(path.join(edge1.dataDir, 'tls'), { recursive: true, force: true });
    await edge1.start();
    assert.notEqual(edge1.fingerprint, old, 'the daemon made a new certificate');
    await wb.command('Cloudlet: Refresh');
    await dialog().waitFor({ timeout: 120_000 });
    const text = await dialog().innerText();
    assert.match(text, /REFUSED.*CHANGED/s);
    assert.ok(text.includes(old!) && text.includes(edge1.fingerprint!), text);
    assert.equal(await dialog().locator('.monaco-button', { hasText: /Trust/ }).count(), 0);
    await shot('certificate-changed');
    await wb.page.keyboard.press('Escape');
    await wb.treeRow('Cloudlets', /Certificate refused/).first().waitFor({ timeout: 60_000 });
  });
});
