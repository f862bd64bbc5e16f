/**
 * The Devices view, device commands and the Reservations panel in real VS Code (code-server), no
 * mocks: two real dockerd engines enrolled as devices on a daemon (127.0.0.2), a busybox HTTP-server
 * image pushed to a real docker-registry on loopback. As a user: add the cloudlet, reserve a device
 * from the palette, run a container on it (it answers on loopback), see its logs, look at the
 * Reservations panel, end the lease (its container is removed). Screenshots in artifacts/screenshots/.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addCloudlet, freePort, openUi, stepFlow, until, useInstalledCli, type CodeServer, type Ui, type Workbench } from './harness';
import { startDaemon, TEST_USERS, type TestDaemon } from '../integration/fixtures/daemon';
import { startRegistry, type RegistryFixture } from '../integration/fixtures/registry';
import { importAndPush, startDockerEngines, type DockerEngines } from '../integration/fixtures/dockerEngines';
import { CloudletClient } from '../../sandbox/client';
import { devicesApi, type DevicesApi } from '../../sandbox/client/devices';

describe('edge devices in real VS Code (code-server)', function () {
  let ui: Ui;
  let cs: CodeServer;
  let wb: Workbench;
  let workspace: string;
  let daemon: TestDaemon;
  let registry: RegistryFixture;
  let engines: DockerEngines;
  let image: string;
  let alice: DevicesApi;
  let port: number;
  const shot = (name: string) => ui.shot(name);

  before(async function () {
    this.timeout(900_000);
    await useInstalledCli();
    [engines, registry] = await Promise.all([startDockerEngines(2), startRegistry()]);
    image = `${registry.host}/cloudlet-ui/httpd:1`;
    importAndPush(engines.list[0], image, 'hello from a reserved device\n');
    daemon = await startDaemon({ ip: '127.0.0.2', env: { CLOUDLET_DEVICE_HEALTH_INTERVAL_MS: '1000' } });
    const admin = devicesApi(await CloudletClient.login({ authUrl: daemon.authUrl, username: 'admin', password: TEST_USERS.admin, project: 'admin' }));
    await admin.enrollDevice({ name: 'pi-1', machineName: 'raspberrypi4-64', model: 'Raspberry Pi 4 Model B', engineEndpoint: engines.list[0].endpoint });
    await admin.enrollDevice({ name: 'nano-1', machineName: 'jetson-nano', model: 'Jetson Nano', engineEndpoint: engines.list[1].endpoint });
    alice = devicesApi(await CloudletClient.login({ authUrl: daemon.authUrl, username: 'alice', password: TEST_USERS.alice, project: 'demo' }));
    port = await freePort();
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-dev-ws-'));
    ui = await openUi({
      workspace,
      shotPrefix: 'devices',
      settings: {
        // No local sandbox in this test: devices come from the configured cloudlet.
        'cloudlet.localDaemon.autoStart': false,
        'cloudlet.localDaemon.listen': `127.0.0.1:${await freePort()}`,
      },
    });
    ({ cs, wb } = ui);
  });

  after(async function () {
    this.timeout(120_000);
    await ui?.close();
    await daemon?.stop().catch(() => {});
    await Promise.all([engines?.close(), registry?.close()].map((p) => p?.catch(() => {})));
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
  });

  stepFlow('devices', () => ({ wb, cs }));

  const header = (v: string) => wb.page.locator('.pane-header', { hasText: v }).first();
  const expanded = async (v: string) => (await header(v).getAttribute('aria-expanded')) === 'true';

  it('after adding a cloudlet that lends devices, the Devices view lists them with their state', async () => {
    await wb.openCloudlets();
    // Give the Devices view the room: collapse Sandbox and Overlays, expand Devices.
    for (const v of ['Sandbox', 'Overlays']) if (await expanded(v)) await header(v).click();
    if (!(await expanded('Devices'))) await header('Devices').click();
    await addCloudlet(wb, { url: daemon.url, name: 'edge1', user: 'alice@demo', password: TEST_USERS.alice });
    await wb.notification(/Cloudlet edge1 added/).waitFor({ timeout: 60_000 });
    await wb.treeRow('Devices', 'pi-1').waitFor({ timeout: 60_000 });
    await wb.treeRow('Devices', 'nano-1').waitFor({ timeout: 30_000 });
    if (await expanded('Cloudlets')) await header('Cloudlets').click();
    assert.match(await wb.treeRow('Devices', 'pi-1').innerText(), /raspberrypi4-64/);
  });

  it('"Reserve Device..." from the palette makes an active lease shown under the device with its time left', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Reserve Device...');
    await wb.pick('Any raspberrypi4-64');
    await wb.answer('10');
    await wb.answer('ui-lease');
    await wb.notification(/Lease ui-lease is ACTIVE on pi-1/).waitFor({ timeout: 60_000 });
    const row = wb.treeRow('Devices', 'ui-lease');
    await until('the lease row with its time left', async () => /left/.test(await row.innerText().catch(() => '')), 60_000);
    const leases = await alice.listLeases();
    assert.equal(leases.find((l) => l.name === 'ui-lease')?.status, 'ACTIVE');
  });

  it('"Run Container on Reserved Device..." runs an HTTP server on the device; it answers on loopback', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Run Container on Reserved Device...');
    await wb.answer(image);
    await wb.answer(`sh -c "echo serving-on-${port}; exec httpd -f -vv -p 127.0.0.1:${port} -h /www"`);
    await wb.answer(String(port));
    await wb.answer('GREETING=hi');
    await wb.notification(/Container .* is Running on pi-1/).waitFor({ timeout: 180_000 });
    const page = await until('the HTTP answer', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      return r?.status === 200 && (await r.text());
    }, 60_000);
    assert.equal(page, 'hello from a reserved device\n');
    await wb.treeRow('Devices', /Running/).waitFor({ timeout: 60_000 });
  });

  it('"Show Container Logs" opens the logs as a read-only document', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Show Container Logs');
    const editor = wb.page.locator('.editor-instance .monaco-editor .view-lines').first();
    await until('the logs in the editor', async () => (await editor.innerText().catch(() => '')).includes(`serving-on-${port}`), 60_000);
    await wb.page.locator('.tabs-container .tab', { hasText: '.log' }).first().waitFor({ timeout: 10_000 });
    await shot('view-and-logs');
  });

  it('the Reservations panel shows the lease on the device\'s time axis (dark and light)', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Show Reservations');
    const panel = wb.webview('Reservations');
    await panel.locator('[data-test=lease-axis]').waitFor({ timeout: 60_000 });
    await until('a lease bar', async () => (await panel.locator('[data-test=lease-bar]').count()) >= 1, 30_000);
    assert.match(await panel.locator('[data-test=lease-axis]').innerText(), /pi-1[\s\S]*nano-1|nano-1[\s\S]*pi-1/);
    await shot('reservations-dark');
    await wb.setTheme('Default Light Modern');
    await shot('reservations-light');
    await wb.setTheme('Default Dark Modern');
  });

  it('"End Lease" ends it: the lease leaves the view and its container is removed', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: End Lease');
    await wb.page.locator('.monaco-dialog-box .monaco-button', { hasText: 'End Lease' }).first().click();
    await wb.notification(/Lease ui-lease is (TERMINATED|TERMINATING)/).waitFor({ timeout: 60_000 });
    await until('the lease to leave the Devices view', async () => (await wb.treeRow('Devices', 'ui-lease').count()) === 0, 60_000);
    await until('the container to be removed', async () => (await alice.listContainers()).length === 0, 60_000);
    const onEngine = engines.list[0].docker(['ps', '-a', '--filter', 'label=org.cloudlet.lease', '--format', '{{.ID}}']).trim();
    assert.equal(onEngine, '');
    await shot('lease-ended');
  });
});
