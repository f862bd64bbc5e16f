/**
 * The realistic guest's overlay pair for bench/publish:
 *   v1  .cache/bench/overlay/realistic-v1.overlay, the launch VM's overlay as bench/overlay makes it
 *       (Debian 12 + systemd, 1 GiB RAM, 4 GiB disk, python3-flask + nginx-light, a Flask app on :5000)
 *   v2  the developer's "new version" flow on that app: synthesize v1 (base + v1 overlay), change one
 *       file in the guest (/srv/app/app.py: the answer's text), restart the app's service, wait for
 *       the new answer, sync, pause, create the overlay. Same base, same writer, same level as v1.
 *  v2-child  the same paused sandbox's overlay stored as a child of v1 (`overlay create --parent v1`:
 *       only what changed since v1's launch; docs/overlay-format.md "Parent overlays"). v1 is linked
 *       into the bench home's overlays/ under its ID so the chain resolves there.
 * v2 is cached in .cache/bench/overlay/realistic-v2.overlay with realistic-v2.json recording its inputs
 * (base ID, v1 overlay ID, the edit, the level, this recipe's version); any difference rebuilds it.
 * When v1 or the base is missing, bench/overlay (--only realistic --reuse-peer) is run to make them.
 * Run alone: `node --import tsx bench/lib/realisticV2.ts`.
 */
import { spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { projectCache, projectRoot } from '../../sandbox/common/paths';
import { BaseStore } from '../../sandbox/base/store';
import { createSandboxOverlay, synthesize } from '../../sandbox/overlay/sandboxOverlay';
import { SandboxManager } from '../../sandbox/sandboxes/sandboxManager';
import { readOverlayFile } from '../../sandbox/registry/overlayFile';
import { DEBIAN_BASE_NAME } from '../../test/integration/fixtures/testBase';

const RECIPE_VERSION = 2;
const LEVEL = 3;                      // bench/overlay's default level (v1 was made with it)
const APP_PORT = 5000;
const APP_FILE = '/srv/app/app.py';
const OLD_TEXT = 'hello from flask on a cloudlet';
const NEW_TEXT = 'hello from flask on a cloudlet, version 2';

export interface RealisticPair {
  v1: string;
  v2: string;
  /** v2 as a child overlay of v1 (same VM state as `v2`). */
  v2Child: string;
  baseId: string;
  change: string;
  /** How v2 was obtained in this run: built (with timings) or taken from the cache. */
  v2Built: { seconds: number; synthesizeSeconds: number; overlaySeconds: number } | 'cached';
}

function get(port: number, p: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => { req.destroy(); resolve(undefined); });
    req.on('error', () => resolve(undefined));
  });
}

async function untilAnswer(port: number, ok: (body: string) => boolean, timeoutMs: number): Promise<string> {
  const t0 = Date.now();
  for (;;) {
    const r = await get(port, '/');
    if (r && r.status === 200 && ok(r.body)) return r.body;
    if (Date.now() - t0 > timeoutMs) throw new Error(`no expected HTTP answer on 127.0.0.1:${port}/ within ${timeoutMs / 1000} s (last: ${r ? `${r.status} ${r.body.trim()}` : 'none'})`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

function realisticBase(home: string): string | undefined {
  if (!fs.existsSync(path.join(home, 'bases'))) return undefined;
  return new BaseStore(home).list().find((b) => b.name === DEBIAN_BASE_NAME)?.id;
}

/** Returns the realistic v1/v2 pair, building what is missing; throws when the realistic guest cannot be built. */
export async function realisticPair(say: (s: string) => void): Promise<RealisticPair> {
  const home = projectCache('bench-overlay', 'realistic', 'home');
  const dir = projectCache('bench', 'overlay');
  const v1 = path.join(dir, 'realistic-v1.overlay');
  const v2 = path.join(dir, 'realistic-v2.overlay');
  const v2Child = path.join(dir, 'realistic-v2-child.overlay');
  const metaFile = path.join(dir, 'realistic-v2.json');

  let baseId = realisticBase(home);
  const v1Ok = () => fs.existsSync(v1) && baseId !== undefined && readOverlayFile(v1).manifest.baseId === baseId;
  if (!v1Ok()) {
    say('realistic v1 overlay or base missing (or v1 made on another base): running bench/overlay --only realistic --reuse-peer to build them');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/overlay.ts', '--only', 'realistic', '--reuse-peer'], { cwd: projectRoot(), stdio: ['ignore', 'ignore', 'inherit'] });
    baseId = realisticBase(home);
    if (r.status !== 0 || !v1Ok()) throw new Error(`bench/overlay could not build the realistic guest's base and v1 overlay (status ${r.status})`);
  }
  const i1 = readOverlayFile(v1);
  const change = `${APP_FILE}: "${OLD_TEXT}" -> "${NEW_TEXT}", systemctl restart flask-app`;
  const inputs = {
    recipe: RECIPE_VERSION, baseId, v1OverlayId: i1.overlayId, level: LEVEL,
    change: createHash('sha256').update(change).digest('hex'),
  };
  if (fs.existsSync(v2) && fs.existsSync(metaFile)) {
    const m = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as { inputs: unknown; v2OverlayId: string; v2ChildOverlayId?: string };
    if (JSON.stringify(m.inputs) === JSON.stringify(inputs) && readOverlayFile(v2).overlayId === m.v2OverlayId
      && fs.existsSync(v2Child) && readOverlayFile(v2Child).overlayId === m.v2ChildOverlayId) {
      say(`realistic v2 overlay (cached, inputs unchanged): ${m.v2OverlayId.slice(0, 12)}, child of v1 ${m.v2ChildOverlayId.slice(0, 12)}`);
      return { v1, v2, v2Child, baseId: baseId!, change, v2Built: 'cached' };
    }
    say('realistic v2 overlay is stale (its inputs changed): rebuilding');
  }

  fs.rmSync(v2, { force: true });
  fs.rmSync(v2Child, { force: true });
  fs.rmSync(metaFile, { force: true });
  const manager = new SandboxManager({ root: home });
  const name = `bench-publish-v2-${process.pid}`;
  let sandboxId: string | undefined;
  const tmpApp = path.join(dir, `.app-v2-${process.pid}.py`);
  const t0 = Date.now();
  try {
    say(`realistic v2: synthesizing v1 ${i1.overlayId.slice(0, 12)} on base ${baseId!.slice(0, 12)}`);
    const s = await synthesize(manager, baseId!, v1, { name });
    sandboxId = s.sandbox.id;
    const fwd = s.sandbox.ports.find((p) => p.guest === APP_PORT);
    if (!fwd) throw new Error(`the synthesized sandbox does not forward guest port ${APP_PORT}`);
    const before = await untilAnswer(fwd.host, (b) => b.includes(OLD_TEXT), 300_000);
    const synthesizeSeconds = (Date.now() - t0) / 1000;
    say(`realistic v2: v1 answers (${synthesizeSeconds.toFixed(1)} s): ${before.trim()}`);

    // The one-file change, as a developer makes it: edit the app's source, copy it in, restart the service.
    const cat = await manager.exec(sandboxId, `cat ${APP_FILE}`, { timeoutMs: 60_000 });
    if (cat.exitCode !== 0 || !cat.stdout.includes(OLD_TEXT)) throw new Error(`${APP_FILE} in the guest is not the bench's Flask app`);
    fs.writeFileSync(tmpApp, cat.stdout.replace(OLD_TEXT, NEW_TEXT));
    await manager.copyIn(sandboxId, tmpApp, APP_FILE, { timeoutMs: 120_000 });
    const restart = await manager.exec(sandboxId, 'systemctl restart flask-app', { timeoutMs: 300_000 });
    if (restart.exitCode !== 0) throw new Error(`systemctl restart flask-app failed: ${restart.stderr}`);
    const after = await untilAnswer(fwd.host, (b) => b.includes(NEW_TEXT), 300_000);
    say(`realistic v2: the changed app answers: ${after.trim()}`);
    // As cloudlet build does before its snapshot: dirty page cache to the disk layer first.
    await manager.exec(sandboxId, 'sync', { timeoutMs: 120_000 });

    const t1 = Date.now();
    const partial = `${v2}.partial`;
    fs.rmSync(partial, { force: true });
    const ports = i1.manifest.vmConfig && Array.isArray((i1.manifest.vmConfig as { ports?: number[] }).ports) ? (i1.manifest.vmConfig as { ports: number[] }).ports : undefined;
    const o = await createSandboxOverlay(manager, sandboxId, { outFile: partial, level: LEVEL, ports });
    const overlaySeconds = (Date.now() - t1) / 1000;
    fs.renameSync(partial, v2);
    say(`realistic v2: overlay ${o.overlayId.slice(0, 12)} ${(o.bytes / 1e6).toFixed(2)} MB in ${overlaySeconds.toFixed(1)} s`);
    // The same paused VM stored as a child of v1 (the sandbox is paused now: taken as it is, no discard again).
    const linked = path.join(manager.paths.overlays, `${i1.overlayId}.overlay`);
    fs.mkdirSync(manager.paths.overlays, { recursive: true });
    if (!fs.existsSync(linked)) fs.copyFileSync(v1, linked);
    const t2 = Date.now();
    const c = await createSandboxOverlay(manager, sandboxId, { outFile: `${v2Child}.partial`, level: LEVEL, ports, parent: i1.overlayId });
    fs.renameSync(`${v2Child}.partial`, v2Child);
    say(`realistic v2 as a child of v1: overlay ${c.overlayId.slice(0, 12)} ${(c.bytes / 1e6).toFixed(2)} MB in ${((Date.now() - t2) / 1000).toFixed(1)} s`);
    fs.writeFileSync(metaFile, JSON.stringify({ inputs, change, v2OverlayId: o.overlayId, v2ChildOverlayId: c.overlayId, made: new Date().toISOString() }, null, 2) + '\n');
    return { v1, v2, v2Child, baseId: baseId!, change, v2Built: { seconds: (Date.now() - t0) / 1000, synthesizeSeconds, overlaySeconds } };
  } finally {
    fs.rmSync(tmpApp, { force: true });
    if (sandboxId) await manager.delete(sandboxId).catch((e) => say(`could not delete sandbox ${sandboxId}: ${(e as Error).message}`));
    manager.close();
  }
}

if (require.main === module) {
  realisticPair((s) => process.stderr.write(`[realistic v2] ${s}\n`)).then(
    (p) => { process.stdout.write(JSON.stringify(p) + '\n'); process.exit(0); },
    (e) => { process.stderr.write(`${(e as Error).stack ?? e}\n`); process.exit(1); },
  );
}
