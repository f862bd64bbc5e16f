/**
 * One-click Publish in real VS Code (code-server), no mocks: the extension starts the local daemon,
 * builds the sample workspace, the Overlay panel's Publish button pushes the overlay (a job of the
 * local daemon) to a real docker-registry on loopback, the reference appears on the Overlays tree
 * item, and "Synthesize on Cloudlet..." offers it: a second daemon (127.0.0.2) pulls the overlay
 * from the registry and the Server panel reaches ACTIVE. Screenshots in artifacts/screenshots/.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT, addCloudlet, freePort, installedDaemonSettings, openUi, serverPanelActive, stepFlow, until, useInstalledCli, type CodeServer, type Ui, type Workbench } from './harness';
import { installTestBase, killProcessesUsing, startDaemon, TEST_USERS, type TestDaemon } from '../integration/fixtures/daemon';
import { startRegistry, type RegistryFixture } from '../integration/fixtures/registry';
import { CloudletClient } from '../../sandbox/client';

describe('one-click Publish in real VS Code (code-server)', function () {
  let ui: Ui;
  let cs: CodeServer;
  let wb: Workbench;
  let localData: string;
  let localPort: number;
  let workspace: string;
  let edge1: TestDaemon;
  let registry: RegistryFixture;
  let secure: RegistryFixture | undefined;
  const shot = (name: string) => ui.shot(name);

  before(async function () {
    this.timeout(1_200_000);
    const cli = await useInstalledCli();
    localData = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-pub-local-'));
    await installTestBase(localData);
    localPort = await freePort();
    [edge1, registry] = await Promise.all([startDaemon({ ip: '127.0.0.2', withTestBase: true }), startRegistry()]);
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-pub-ws-'));
    fs.cpSync(path.join(ROOT, 'test/fixtures/sample-backend'), path.join(workspace, 'sample-backend'), { recursive: true });
    ui = await openUi({
      workspace: path.join(workspace, 'sample-backend'),
      shotPrefix: 'publish',
      settings: { ...installedDaemonSettings(cli, localPort, localData), 'cloudlet.registry.default': `${registry.host}/overlays` },
    });
    ({ cs, wb } = ui);
  });

  after(async function () {
    this.timeout(120_000);
    await ui?.close();
    if (localData) { killProcessesUsing(localData); fs.rmSync(localData, { recursive: true, force: true }); }
    await edge1?.stop().catch(() => {});
    await registry?.close().catch(() => {});
    await secure?.close().catch(() => {});
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
  });

  stepFlow('publish', () => ({ wb, cs }), async () => {
    await wb?.command('Notifications: Show Notifications').catch(() => {});
    // What the local daemon's jobs say (publish errors, without credentials).
    const admin = await CloudletClient.login({ authUrl: `http://127.0.0.1:${localPort}/identity/v3`, username: 'admin', password: fs.readFileSync(path.join(localData, 'admin.password'), 'utf8').trim(), project: 'admin' });
    for (const j of (await admin.listJobs()).slice(-4)) console.log(`job ${j.kind} ${j.status} ${j.error ?? ''}`);
  });

  it('builds the sample workspace: the Overlay panel is Ready with Publish enabled', async () => {
    await wb.openCloudlets();
    await wb.treeRow('Sandbox', 'test-guest').waitFor({ timeout: 120_000 });
    await wb.command('Cloudlet: Build Overlay from Workspace (cloudlet.yaml)');
    const panel = wb.webview('Overlay');
    await panel.locator('[data-test=chart]').waitFor({ timeout: 600_000 });
    assert.match(await panel.locator('[data-test=status]').innerText(), /Ready/);
    await until('Publish to be enabled', async () => (await panel.locator('[data-test=publish]').getAttribute('disabled')) === null, 30_000);
    await wb.treeRow('Overlays', 'sample-backend').waitFor({ timeout: 60_000 });
  });

  it('one click on Publish: the reference appears on the panel and the Overlays tree item', async () => {
    await wb.clearNotifications();
    await wb.closeBottomPanel();
    const panel = wb.webview('Overlay');
    await panel.locator('[data-test=publish]').click();
    const ref = await until('the published reference in the panel', async () => (await panel.locator('[data-test=published-ref]').innerText().catch(() => '')).trim(), 300_000);
    assert.match(ref, new RegExp(`^oci://${registry.host.replace(/\./g, '\\.')}/overlays:sample-backend-[0-9a-f]{8}$`));
    const row = wb.treeRow('Overlays', 'sample-backend');
    await until('the reference on the tree item', async () => (await row.innerText().catch(() => '')).includes(ref), 60_000);
    // The registry really holds it: the tag is listed.
    const tags = await (await fetch(`${registry.url}/v2/overlays/tags/list`)).json() as { tags: string[] };
    assert.ok(tags.tags.includes(ref.split(':').pop()!), JSON.stringify(tags));
    await wb.notification(/Published sample-backend as/).waitFor({ timeout: 30_000 });
    await shot('published-panel');
    await row.hover();
    await shot('published-tree-item');
  });

  it('"Synthesize on Cloudlet..." offers the published reference; the Server panel reaches ACTIVE on 127.0.0.2', async () => {
    await wb.clearNotifications();
    await addCloudlet(wb, { url: edge1.url, name: 'edge1', user: 'alice@demo', password: TEST_USERS.alice });
    await wb.notification(/Cloudlet edge1 added/).waitFor({ timeout: 60_000 });
    await wb.command('Cloudlet: Synthesize on Cloudlet...');
    await wb.pick('published reference');
    await serverPanelActive(wb);
    await wb.treeRow('Cloudlets', 'sample-backend').waitFor({ timeout: 60_000 });
    const alice = await CloudletClient.login({ authUrl: edge1.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const servers = await alice.listServers();
    const s = servers.find((x) => x.name === 'sample-backend');
    assert.ok(s, JSON.stringify(servers.map((x) => x.name)));
    assert.match(s.metadata.overlay_url, new RegExp(`^oci://${registry.host.replace(/\./g, '\\.')}/overlays:`));
    assert.equal(s.status, 'ACTIVE');
    await wb.closeBottomPanel();
    await shot('synthesis-from-registry');
  });

  it('a registry that wants a login: credentials are asked for once, kept in SecretStorage, never in settings or logs', async () => {
    secure = await startRegistry({ auth: true });
    const host = secure.host;
    // Change the default registry as a user does, in the Settings editor (VS Code writes settings.json).
    await wb.command('Preferences: Open Settings (UI)');
    await wb.page.locator('.settings-editor').waitFor({ timeout: 30_000 });
    await wb.page.keyboard.type('cloudlet.registry.default', { delay: 10 });
    const input = wb.page.locator('.settings-editor .setting-item-contents', { hasText: 'Where one-click Publish pushes' }).locator('input').first();
    await input.waitFor({ timeout: 30_000 });
    await input.fill(`${host}/team/overlays`);
    await input.press('Tab');
    await until('VS Code to save the setting', async () => fs.readFileSync(cs.userSettings, 'utf8').includes(`${host}/team/overlays`), 30_000);
    await wb.command('View: Close All Editors');
    await wb.clearNotifications();
    await wb.command('Cloudlet: Publish Overlay');
    // The publish goes to the new default (the settings change was read) and the registry says 401: asked once.
    await wb.answer(secure.username!, { timeout: 180_000 });
    await wb.answer(secure.password!);
    await wb.notification(new RegExp(`Published sample-backend as oci://${host.replace(/\./g, '\\.')}/team/overlays:`)).waitFor({ timeout: 300_000 });
    const row = wb.treeRow('Overlays', 'sample-backend');
    await until('the new reference on the tree item', async () => (await row.innerText().catch(() => '')).includes(`${host}/team/overlays`), 60_000);
    await shot('published-with-login');
    const tags = await (await fetch(`${secure.url}/v2/team/overlays/tags/list`, { headers: { authorization: `Basic ${Buffer.from(`${secure.username}:${secure.password}`).toString('base64')}` } })).json() as { tags: string[] };
    assert.equal(tags.tags.length, 1);
    // The password is nowhere in settings or logs (the extension's output channel, code-server's log).
    assert.ok(!fs.readFileSync(cs.userSettings, 'utf8').includes(secure.password!));
    assert.ok(!cs.log().includes(secure.password!));
    const logs = path.join(path.dirname(path.dirname(cs.userSettings)), 'logs');
    const files = fs.existsSync(logs) ? fs.readdirSync(logs, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name)) : [];
    console.log(`checked ${files.length} log files, e.g. ${files.filter((f) => /cloudlet/i.test(f)).slice(0, 3).join(', ')}`);
    for (const f of files) assert.ok(!fs.readFileSync(f, 'utf8').includes(secure.password!), `password in ${f}`);
  });
});
