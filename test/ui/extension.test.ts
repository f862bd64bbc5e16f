/**
 * The extension in real VS Code (code-server) against real daemons, as a user drives it:
 * install the .vsix; the Cloudlets container shows the local base; resume it from the palette;
 * build the sample workspace -> Overlay panel chart (dark and light). Bad cases: a cancelled build,
 * wrong credentials, a cloudlet lacking the base, a daemon that does not answer; a window reload
 * stops the daemon the extension started. Screenshots of every step in artifacts/screenshots/.
 * No mocks: the local daemon is started by the extension itself.
 * The sandbox terminal, synthesis and handoff (with the Server panel's page-tracking lines, 18.4)
 * are steps of test/ui/firstrun.test.ts, which takes the same path through the editor.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT, addCloudlet, freePort, installedDaemonSettings, openUi, stepFlow, until, useInstalledCli, type CodeServer, type Ui, type Workbench } from './harness';
import { installTestBase, killProcessesUsing, startDaemon, TEST_USERS, type TestDaemon } from '../integration/fixtures/daemon';

describe('extension in real VS Code (code-server)', function () {
  let ui: Ui;
  let cs: CodeServer;
  let wb: Workbench;
  let localData: string;
  let localPort: number;
  let workspace: string;
  let edge1: TestDaemon, nobase: TestDaemon;
  const daemons: TestDaemon[] = [];
  const shot = (name: string) => ui.shot(name);

  before(async function () {
    this.timeout(1_200_000);
    const cli = await useInstalledCli();
    localData = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-local-'));
    await installTestBase(localData);
    localPort = await freePort();
    [edge1, nobase] = await Promise.all([
      startDaemon({ ip: '127.0.0.2', withTestBase: true }),
      startDaemon({ ip: '127.0.0.4' }),
    ]);
    daemons.push(edge1, nobase);
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-ws-'));
    fs.cpSync(path.join(ROOT, 'test/fixtures/sample-backend'), path.join(workspace, 'sample-backend'), { recursive: true });
    ui = await openUi({ workspace: path.join(workspace, 'sample-backend'), settings: installedDaemonSettings(cli, localPort, localData) });
    ({ cs, wb } = ui);
  });

  after(async function () {
    this.timeout(120_000);
    await ui?.close();
    // The extension started the local daemon, so its deactivate stops it (code-server's shutdown may
    // not give the extension host time to: the kill below is the safety net, not the feature).
    if (localPort) {
      const up = await fetch(`http://127.0.0.1:${localPort}/`).then(() => true, () => false);
      console.log(`local daemon after code-server stopped: ${up ? 'still answering' : 'stopped'}`);
    }
    // The extension host went with code-server; its daemon and VMs (if any survived) go now.
    if (localData) { killProcessesUsing(localData); fs.rmSync(localData, { recursive: true, force: true }); }
    await Promise.all(daemons.map((d) => d.stop().catch(() => {})));
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
  });

  stepFlow('extension', () => ({ wb, cs }));


  it('installs the .vsix: the Cloudlets container shows the local base', async () => {
    await wb.openCloudlets();
    for (const v of ['Sandbox', 'Cloudlets', 'Overlays', 'Devices']) await wb.page.locator('.pane-header', { hasText: v }).first().waitFor();
    await wb.treeRow('Sandbox', 'test-guest').waitFor({ timeout: 120_000 });
    await shot('container-local-base');
  });

  it('"Cloudlet: Resume Base VM in Sandbox" from the palette makes a running sandbox node', async () => {
    await wb.command('Cloudlet: Resume Base VM in Sandbox');
    const row = wb.treeRow('Sandbox', 'sandbox-test-guest');
    await until('a running sandbox node', async () => /ACTIVE/.test(await row.innerText().catch(() => '')), 180_000);
    await wb.page.locator('.statusbar-item', { hasText: 'sandbox-test-guest' }).first().waitFor({ timeout: 30_000 });
    await shot('sandbox-running');
  });

  it('building from the sample workspace fills the Overlay panel with its chart', async () => {
    await wb.command('Cloudlet: Build Overlay from Workspace (cloudlet.yaml)');
    const panel = wb.webview('Overlay');
    await panel.locator('[data-test=phases]').waitFor({ timeout: 120_000 });
    await shot('overlay-building');
    await panel.locator('[data-test=chart]').waitFor({ timeout: 600_000 });
    assert.match(await panel.locator('[data-test=status]').innerText(), /Ready/);
    assert.ok((await panel.locator('.legend tbody tr').count()) >= 2, 'the chart has several parts');
    await wb.treeRow('Overlays', 'sample-backend').waitFor({ timeout: 60_000 });
    await wb.closeBottomPanel();
    await shot('overlay-panel-dark');
    await wb.setTheme('Default Light Modern');
    await shot('overlay-panel-light');
    await wb.setTheme('Default Dark Modern');
  });

  it('a cancelled build is reported and leaves nothing half-built in the Overlays view', async () => {
    await wb.clearNotifications();
    // A second workspace folder whose install step takes long enough to be cancelled mid-build.
    const slow = path.join(cs.workspace, 'slow');
    fs.cpSync(path.join(ROOT, 'test/fixtures/sample-backend'), slow, { recursive: true });
    const yaml = fs.readFileSync(path.join(slow, 'cloudlet.yaml'), 'utf8').replace(/^name: .*$/m, 'name: slow-backend').replace(/^install:\n/m, 'install:\n  - sleep 120\n');
    fs.writeFileSync(path.join(slow, 'cloudlet.yaml'), yaml);
    const before = await wb.viewPane('Overlays').locator('.monaco-list-row').count();
    await wb.command('Cloudlet: Build Overlay from Workspace (cloudlet.yaml)');
    await wb.pick('slow/cloudlet.yaml');
    const panel = wb.webview('Overlay');
    await until('the slow build to reach its install step', async () => /install/.test(await panel.locator('[data-test=phases]').innerText().catch(() => '')), 180_000);
    await panel.locator('[data-test=cancel]').click();
    await until('the build to end cancelled', async () => /Cancelled/.test(await panel.locator('[data-test=status]').innerText().catch(() => '')), 180_000);
    await wb.notification(/cancel/i).waitFor({ timeout: 30_000 });
    await shot('build-cancelled');
    await wb.command('Cloudlet: Refresh');
    await until('the overlay list to settle', async () => (await wb.viewPane('Overlays').locator('.monaco-list-row').count()) === before, 30_000);
    assert.equal(await wb.treeRow('Overlays', 'slow').count(), 0);
    fs.rmSync(slow, { recursive: true, force: true });
  });

  it('wrong credentials are shown with "Update Credentials", and fixing them connects', async () => {
    await wb.clearNotifications();
    await addCloudlet(wb, { url: edge1.url, name: 'edge1', user: 'alice@demo', password: 'not-the-password' });
    await wb.notification(/Wrong credentials/).waitFor({ timeout: 60_000 });
    await wb.treeRow('Cloudlets', /Wrong credentials/).waitFor({ timeout: 30_000 });
    await shot('wrong-credentials');
    await wb.clickNotificationButton(/Wrong credentials/, 'Update Credentials');
    await wb.answer('alice');
    await wb.answer(TEST_USERS.alice);
    await wb.treeRow('Cloudlets', /No servers or base VMs yet|test-guest/).first().waitFor({ timeout: 60_000 });
  });

  it('a cloudlet that lacks the base: synthesis is refused with a clear message', async () => {
    await wb.clearNotifications();
    await addCloudlet(wb, { url: nobase.url, name: 'nobase', user: 'alice@demo', password: TEST_USERS.alice });
    await wb.notification(/Cloudlet nobase added/).waitFor({ timeout: 60_000 });
    await wb.command('Cloudlet: Synthesize on Cloudlet...');
    await wb.pick('nobase');
    await wb.notification(/lacks the base VM/).waitFor({ timeout: 120_000 });
    // 17.2: the fix is offered as a button; alice is no admin there, which is said before anything is sent.
    await wb.clickNotificationButton(/lacks the base VM/, 'Copy Base to Cloudlet...');
    await wb.notification(/Only an admin of nobase can add a base VM/).waitFor({ timeout: 60_000 });
    await shot('lacks-base');
  });

  it('the walkthrough for the first overlay opens from the palette', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Get Started: Your First Overlay');
    await wb.page.locator('.gettingStartedContainer, .getting-started-category', { hasText: 'Your first VM overlay' }).first().waitFor({ timeout: 60_000 });
    await wb.page.locator('text=Resume it in the sandbox').first().waitFor({ timeout: 30_000 });
    await shot('walkthrough');
  });

  it('reloading the window stops the daemon the extension started; the new window starts its own', async () => {
    const daemonPids = () => fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)).filter((pid) => {
      try { const c = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'); return c.includes('serve') && c.includes(localData) && !c.includes('qemu'); } catch { return false; }
    });
    const before = daemonPids();
    assert.equal(before.length, 1, `one local daemon runs (${before.join(', ')})`);
    await wb.command('Developer: Reload Window');
    await until('the old daemon to stop (deactivate)', async () => !fs.existsSync(`/proc/${before[0]}`), 60_000);
    await wb.page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
    await wb.openCloudlets();
    await wb.treeRow('Sandbox', 'sandbox-test-guest').waitFor({ timeout: 120_000 });
    const after = daemonPids();
    assert.equal(after.length, 1);
    assert.notEqual(after[0], before[0]);
    await shot('after-reload');
  });

  it('a daemon that does not answer: shown in the tree and as a message with Retry', async () => {
    await wb.clearNotifications();
    const deadPort = await freePort();
    await addCloudlet(wb, { url: `http://127.0.0.5:${deadPort}`, name: 'offline', user: 'alice@demo', password: 'x' });
    await wb.notification(/Cannot reach the cloudlet daemon/).waitFor({ timeout: 60_000 });
    await wb.notification(/Cannot reach the cloudlet daemon/).locator('.monaco-button', { hasText: 'Retry' }).waitFor();
    await wb.treeRow('Cloudlets', /Not reachable/).waitFor({ timeout: 30_000 });
    await shot('daemon-unreachable');
  });
});
