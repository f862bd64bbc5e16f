/**
 * A fleet in real VS Code (code-server), no mocks: the real Keystone (Debian's keystone 22.x,
 * SQLite, 127.0.0.1) and two cloudlet daemons registered as its regions, edge1 (127.0.0.2) and edge2
 * (127.0.0.3, reached through a proxy on 127.0.0.4 that adds 2 x 15 ms), as in
 * test/integration/fleet.test.ts (fixtures/fleet.ts). As a user: Add Cloudlet with the Keystone's
 * URL and a password -> every region is a cloudlet with its servers and bases; "Synthesize on
 * Nearest Cloudlet..." measures the regions (edge1 nearest, edge2 farther, an unreachable edge3
 * shown); Add Cloudlet with an application credential (#14.5) -> its regions list their servers;
 * "Hand Off Server..." from edge2 to edge1 within the fleet (the destination takes the user's own token).
 * The local sandbox only holds the overlay (no VM runs there); one server runs at edge2.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort, installedDaemonSettings, openUi, stepFlow, until, useInstalledCli, type CodeServer, type Ui, type Workbench } from './harness';
import { killProcessesUsing } from '../integration/fixtures/daemon';
import { startFleet, type Fleet } from '../integration/fixtures/fleet';
import { FLEET_USERS } from '../integration/fixtures/keystone';
import { sampleOverlay, uploadOverlay } from '../integration/fixtures/sampleOverlay';
import { CloudletClient } from '../../sandbox/client';
import { registerRegion, removeRegion } from '../../sandbox/client/regions';

describe('a fleet under one real Keystone in real VS Code (code-server)', function () {
  let ui: Ui;
  /** The editor opening while the fleet comes up (closed by after() even when before() fails first). */
  let opening: Promise<Ui> | undefined;
  let cs: CodeServer;
  let wb: Workbench;
  let fleet: Fleet;
  let localData: string;
  let localPort: number;
  let workspace: string;
  /** alice's application credential at the Keystone (what `openstack application credential create` prints). */
  let appCred: { id: string; secret: string };
  const shot = (name: string) => ui.shot(name);
  const alice = () => CloudletClient.login({ authUrl: fleet.ks.authUrl, username: 'alice', password: FLEET_USERS.alice.password, project: FLEET_USERS.alice.project });
  const admin = () => CloudletClient.login({ authUrl: fleet.ks.authUrl, username: 'admin', password: FLEET_USERS.admin.password, project: 'admin' });

  before(async function () {
    this.timeout(900_000);
    const cli = await useInstalledCli();
    localData = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-fleet-local-'));
    localPort = await freePort();
    workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-ui-fleet-ws-'));
    opening = openUi({ workspace, shotPrefix: 'fleet', settings: installedDaemonSettings(cli, localPort, localData) });
    opening.catch(() => {});
    fleet = await startFleet();
    const a = await alice();
    // A server of alice's at edge2, for the views to list (one VM of the test base).
    const e2 = a.inRegion('edge2');
    const { jobId } = await e2.createServer({ name: 'ui-fleet-server', imageRef: (await e2.listBases())[0].id });
    const r = await fetch(`${fleet.ks.authUrl}/users/${a.session.userId}/application_credentials`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-auth-token': a.token },
      body: JSON.stringify({ application_credential: { name: 'ui-ci', description: 'the editor as CI would log in' } }),
    });
    assert.equal(r.status, 201, await r.clone().text());
    appCred = ((await r.json()) as { application_credential: { id: string; secret: string } }).application_credential;
    assert.equal((await e2.watchJob(jobId!)).status, 'DONE');
    ui = await opening;
    ({ cs, wb } = ui);
  });

  after(async function () {
    this.timeout(120_000);
    await (ui ?? await opening?.catch(() => undefined))?.close();
    if (localData) { killProcessesUsing(localData); fs.rmSync(localData, { recursive: true, force: true }); }
    await fleet?.close().catch(() => {});
    if (workspace) fs.rmSync(workspace, { recursive: true, force: true });
  });

  stepFlow('fleet', () => ({ wb, cs }));

  const header = (v: string) => wb.page.locator('.pane-header', { hasText: v }).first();
  /** The Cloudlets view's rows as [label text, depth], in order (the tree is flat in the DOM). */
  const cloudletRows = () => wb.viewPane('Cloudlets').locator('.monaco-list-row').evaluateAll((rows) =>
    rows.map((r) => [(r.querySelector('.label-name') ?? r).textContent?.trim() ?? '', Number(r.getAttribute('aria-level'))] as [string, number]));
  /** The labels of the children of the cloudlet row `name`. */
  const childrenOf = async (name: string): Promise<string[]> => {
    const rows = await cloudletRows();
    const i = rows.findIndex(([label]) => label === name);
    if (i < 0) return [];
    const out: string[] = [];
    for (let j = i + 1; j < rows.length && rows[j][1] > rows[i][1]; j++) out.push(rows[j][0]);
    return out;
  };

  /**
   * Answers the quick input once it is the one showing `what` (title or prompt): on a loaded machine the
   * previous input can still be up after its Enter (its validation is a round trip to the extension host).
   */
  const answerWhen = async (what: RegExp, text: string) => {
    await until(`the input ${what}`, async () => what.test(await wb.page.locator('.quick-input-widget:visible').innerText().catch(() => '')), 60_000, 200);
    await wb.answer(text);
  };

  it('Add Cloudlet with the Keystone URL and a password: each region of the catalog is a cloudlet with its servers and bases', async () => {
    await wb.openCloudlets();
    // Give the Cloudlets view the room: collapse Sandbox and Overlays.
    for (const v of ['Sandbox', 'Overlays']) if ((await header(v).getAttribute('aria-expanded')) === 'true') await header(v).click();
    await wb.command('Cloudlet: Add Cloudlet...');
    await answerWhen(/Add Cloudlet \(1\/4\)/, fleet.ks.authUrl);
    await answerWhen(/Add Cloudlet \(2\/4\)/, 'fleet');
    await answerWhen(/Add Cloudlet \(3\/4\)/, 'alice@demo');
    await answerWhen(/Add Cloudlet \(4\/4\)/, FLEET_USERS.alice.password);
    await wb.notification(/Cloudlet fleet added/).waitFor({ timeout: 120_000 });
    await until('both regions with their content', async () => (await childrenOf('fleet/edge1')).length && (await childrenOf('fleet/edge2')).length >= 2, 120_000);
    assert.deepEqual((await cloudletRows()).filter(([, level]) => level === 1).map(([l]) => l), ['fleet/edge1', 'fleet/edge2']);
    assert.deepEqual(await childrenOf('fleet/edge1'), ['test-guest'], 'edge1: its base, no servers');
    assert.deepEqual(await childrenOf('fleet/edge2'), ['ui-fleet-server', 'test-guest'], 'edge2: alice\'s server and its base');
    // The settings keep the login and its regions, never the password.
    const saved = (JSON.parse(fs.readFileSync(cs.userSettings, 'utf8')) as { 'cloudlet.cloudlets': Record<string, unknown>[] })['cloudlet.cloudlets'];
    assert.deepEqual(saved.map((c) => [c.name, c.url, c.username, c.project, c.regions]), [['fleet', fleet.ks.authUrl, 'alice', 'demo', ['edge1', 'edge2']]]);
    assert.ok(!fs.readFileSync(cs.userSettings, 'utf8').includes(FLEET_USERS.alice.password));
    await shot('regions');
  });

  it('"Synthesize on Nearest Cloudlet..." measures each region: edge1 nearest first, edge2 farther by the proxy\'s delay, an unreachable region shown', async () => {
    // The overlay to place, in the local sandbox (the extension started its daemon).
    const password = await until('the local daemon\'s admin password', async () => fs.existsSync(path.join(localData, 'admin.password')) && fs.readFileSync(path.join(localData, 'admin.password'), 'utf8').trim(), 120_000);
    const local = await until('the local daemon', () => CloudletClient.login({ authUrl: `http://127.0.0.1:${localPort}/identity/v3`, username: 'admin', password, project: 'admin' }), 120_000);
    await uploadOverlay(local, await sampleOverlay());
    // edge3: a region whose endpoints nobody answers.
    const nowhere = `http://127.0.0.5:${await freePort()}`;
    const adm = await admin();
    await registerRegion(adm, 'edge3', { compute: `${nowhere}/compute/v2.1`, image: `${nowhere}/image`, cloudlet: `${nowhere}/cloudlet/v1` });
    try {
      await wb.command('Cloudlet: Refresh');
      await wb.treeRow('Cloudlets', 'fleet/edge3').waitFor({ timeout: 60_000 });
      await wb.clearNotifications();
      await wb.command('Cloudlet: Synthesize on Nearest Cloudlet...');
      const qp = wb.page.locator('.quick-input-widget:visible');
      await qp.locator('.quick-input-title', { hasText: 'Nearest cloudlet for sample-backend' }).waitFor({ timeout: 120_000 });
      assert.match(await qp.locator('.quick-input-title').innerText(), /Nearest cloudlet for sample-backend: fleet\/edge1/);
      const rows = await qp.locator('.quick-input-list .monaco-list-row').allInnerTexts();
      await shot('nearest');
      const text = rows.map((r) => r.replace(/\s+/g, ' '));
      assert.equal(text.length, 3, text.join('\n'));
      assert.match(text[0], /fleet\/edge1\s*median [\d.]+ ms.*5\/5 probes answered.*nearest/);
      assert.match(text[1], /fleet\/edge2\s*median [\d.]+ ms.*5\/5 probes answered.*farther/);
      assert.match(text[2], /fleet\/edge3 .*unreachable: .*ECONNREFUSED/);
      const median = (t: string) => Number(/median ([\d.]+) ms/.exec(t)![1]);
      assert.ok(median(text[1]) >= 30, `edge2's median ${median(text[1])} ms includes the proxy's 2 x 15 ms`);
      assert.ok(median(text[0]) < median(text[1]));
      // The nearest is preselected: Enter would synthesize there. Not now (no VM needed for the choice).
      assert.match(await qp.locator('.quick-input-list .monaco-list-row.focused').innerText(), /fleet\/edge1/);
      await wb.page.keyboard.press('Escape');
    } finally {
      await removeRegion(adm, 'edge3');
    }
    await wb.command('Cloudlet: Refresh');
    await until('edge3 to leave the view', async () => (await wb.treeRow('Cloudlets', 'fleet/edge3').count()) === 0, 60_000);
  });

  it('14.5: Add Cloudlet with an application credential (its ID and secret): its regions list their servers', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Add Cloudlet...');
    await answerWhen(/Add Cloudlet \(1\/4\)/, fleet.ks.authUrl);
    await answerWhen(/Add Cloudlet \(2\/4\)/, 'ci');
    // The user name input offers the other way to log in: its key button.
    await until('the user name input', async () => /Add Cloudlet \(3\/4\)/.test(await wb.page.locator('.quick-input-widget:visible').innerText().catch(() => '')), 60_000, 200);
    await wb.page.locator('.quick-input-widget:visible .action-label[aria-label*="application credential"]').first().click();
    await wb.pick('By ID');
    await answerWhen(/ID of the application credential/, appCred.id);
    await answerWhen(/Secret of application credential/, appCred.secret);
    await wb.notification(/Cloudlet ci added/).waitFor({ timeout: 120_000 });
    await until('ci\'s regions with their content', async () => (await childrenOf('ci/edge2')).length >= 2 && (await childrenOf('ci/edge1')).length, 120_000);
    assert.deepEqual(await childrenOf('ci/edge2'), ['ui-fleet-server', 'test-guest'], 'the credential sees alice\'s server in project demo');
    assert.deepEqual(await childrenOf('ci/edge1'), ['test-guest']);
    const saved = (JSON.parse(fs.readFileSync(cs.userSettings, 'utf8')) as { 'cloudlet.cloudlets': Record<string, unknown>[] })['cloudlet.cloudlets'].find((c) => c.name === 'ci');
    assert.deepEqual(saved?.applicationCredential, { id: appCred.id });
    assert.ok(!fs.readFileSync(cs.userSettings, 'utf8').includes(appCred.secret), 'the secret is not in the settings');
    await shot('application-credential');
  });

  it('16.3: "Hand Off Server..." from fleet/edge2 to fleet/edge1 runs on the user\'s own token: the server lands in alice\'s project at edge1', async () => {
    await wb.clearNotifications();
    await wb.command('Cloudlet: Hand Off Server...');
    await wb.pick('fleet/edge2');
    await wb.pick('fleet/edge1');
    await wb.notification(/ui-fleet-server moved to fleet\/edge1/).waitFor({ timeout: 600_000 });
    const a = await alice();
    const atEdge1 = await a.inRegion('edge1').listServers();
    assert.deepEqual(atEdge1.map((x) => [x.name, x.status, x.tenant_id]), [['ui-fleet-server', 'ACTIVE', a.session.projectId]]);
    assert.deepEqual(await a.inRegion('edge2').listServers(), []);
    await until('the view to show it under fleet/edge1', async () => (await childrenOf('fleet/edge1')).includes('ui-fleet-server'), 60_000);
    await shot('handoff');
  });
});
