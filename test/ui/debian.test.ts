/**
 * Issue 12.4 in real VS Code (code-server), no mocks: the local daemon holds the Debian 12 base
 * with python3 (debian-12-python3, cached, built once per machine by scripts/setup.sh), a Python
 * back-end workspace (test/fixtures/python-backend) is built from the editor into an overlay, and
 * "Synthesize on Cloudlet..." sends it to a second daemon (127.0.0.2) holding the same base: the
 * Server panel reaches ACTIVE and the back-end answers over HTTP on the server's forwarded port, its
 * hit counter going on. The back-end uses Python's standard library only: installing Flask from
 * .deb files in a Debian build (minutes of dpkg under TCG) is the CLI flow's
 * (test/integration/debianFlow.test.ts); here the editor's path is what is tested.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addCloudlet, freePort, installedDaemonSettings, openUi, useInstalledCli, stepFlow, until, type CodeServer, type Ui, type Workbench } from './harness';
import { installDebianBase, killProcessesUsing, startDaemon, TEST_USERS, type TestDaemon } from '../integration/fixtures/daemon';
import { PYTHON_PORT, PYTHON_TEXT, pythonWorkspace } from '../integration/fixtures/flaskBackend';
import { httpGet } from '../integration/fixtures/sampleOverlay';
import { DEBIAN_VARIANTS } from '../integration/fixtures/testBase';
import { CloudletClient } from '../../sandbox/client';

describe('the Debian 12 base in real VS Code: build a Python back-end, synthesize it on a cloudlet', function () {
  let ui: Ui;
  let cs: CodeServer;
  let wb: Workbench;
  let localData: string;
  let workspace: string;
  let edge1: TestDaemon;
  const shot = (name: string) => ui.shot(name);

  before(async function () {
    this.timeout(1_800_000);
    const cli = await useInstalledCli();
    localData = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-deb-local-'));
    await installDebianBase(localData, 'python3');
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-deb-ws-'));
    await pythonWorkspace(path.join(workspace, 'python-backend'));
    edge1 = await startDaemon({ ip: '127.0.0.2', withDebianBase: 'python3' });
    ui = await openUi({ workspace: path.join(workspace, 'python-backend'), shotPrefix: 'debian', settings: installedDaemonSettings(cli, await freePort(), localData) });
    ({ cs, wb } = ui);
  });

  after(async function () {
    this.timeout(120_000);
    await ui?.close();
    if (localData) { killProcessesUsing(localData); fs.rmSync(localData, { recursive: true, force: true }); }
    await edge1?.stop().catch(() => {});
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
  });

  stepFlow('debian', () => ({ wb, cs }), async () => {
    await wb?.command('Notifications: Show Notifications').catch(() => {});
  });

  it('the Sandbox view lists the Debian base; building the Python workspace from the editor: the Overlay panel is Ready', async () => {
    await wb.openCloudlets();
    await wb.treeRow('Sandbox', DEBIAN_VARIANTS.python3.name).waitFor({ timeout: 120_000 });
    await wb.command('Cloudlet: Build Overlay from Workspace (cloudlet.yaml)');
    const panel = wb.webview('Overlay');
    await panel.locator('[data-test=chart]').waitFor({ timeout: 1_200_000 });
    assert.match(await panel.locator('[data-test=status]').innerText(), /Ready/);
    // What the discards removed (issue 13.5): the guest's freed memory, zeroed before the snapshot, is shown.
    assert.match(await panel.locator('[data-test=discarded-memory]').innerText(), /^[1-9][\d.]* (KiB|MiB|GiB)$/);
    await wb.treeRow('Overlays', 'python-backend').waitFor({ timeout: 60_000 });
    await wb.closeBottomPanel();
    await shot('overlay-built');
  });

  it('"Synthesize on Cloudlet..." sends it to 127.0.0.2: the Server panel reaches ACTIVE and the back-end answers over HTTP', async () => {
    await wb.clearNotifications();
    await addCloudlet(wb, { url: edge1.url, name: 'edge1', user: 'alice@demo', password: TEST_USERS.alice });
    await wb.notification(/Cloudlet edge1 added/).waitFor({ timeout: 60_000 });
    await wb.command('Cloudlet: Synthesize on Cloudlet...');
    const panel = wb.webview('Server');
    await panel.locator('[data-test=timeline]').waitFor({ timeout: 600_000 });
    await until('the server to be ACTIVE', async () => (await panel.locator('[data-test=status]').innerText().catch(() => '')) === 'ACTIVE', 900_000);
    await wb.treeRow('Cloudlets', 'python-backend').waitFor({ timeout: 60_000 });
    // The panel's address is Flask's forwarded port: what Open in Browser would open answers.
    const urls = await panel.locator('[data-test=urls]').innerText();
    const shown = /http:\/\/(127\.0\.0\.1:\d+)\//.exec(urls);
    assert.ok(shown, `the Server panel shows the back-end's address: ${urls}`);
    assert.match((await httpGet(shown[1], '/', 60_000)).body, new RegExp(PYTHON_TEXT));
    const alice = await CloudletClient.login({ authUrl: edge1.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' });
    const s = (await alice.listServers()).find((x) => x.name === 'python-backend');
    assert.ok(s, 'the server is on edge1');
    assert.equal(s.status, 'ACTIVE');
    const at = (s['OS-EXT-CLOUDLET:ports'] as Record<string, string>)[String(PYTHON_PORT)];
    assert.ok(at, JSON.stringify(s['OS-EXT-CLOUDLET:ports']));
    const a = JSON.parse((await httpGet(at, '/counter', 60_000)).body) as { hits: number; pid: number };
    const b = JSON.parse((await httpGet(at, '/counter', 60_000)).body) as { hits: number; pid: number };
    assert.equal(b.hits, a.hits + 1);
    assert.equal(b.pid, a.pid);
    await wb.closeBottomPanel();
    await shot('synthesized-on-edge1');
  });
});
