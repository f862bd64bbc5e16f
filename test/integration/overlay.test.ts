/**
 * Overlays with real QEMU: build the sample back-end from cloudlet.yaml on the test base, make its
 * overlay, remove the sandbox, synthesize from base + overlay, and talk to the back-end through the
 * forwarded port. Also: same overlay ID twice from one paused sandbox, and bad overlays refused
 * before any VM starts.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { projectRoot } from '../../sandbox/common/paths';
import { loadBuildFile } from '../../sandbox/build/buildFile';
import { runBuild, BuildResult } from '../../sandbox/build/build';
import { canonicalJson, OverlayReader, type OverlayManifest } from '../../sandbox/overlay';
import { CONTAINER_HEADER_SIZE, encodeContainerHeader } from '../../sandbox/overlay/format';
import { createSandboxOverlay, synthesize } from '../../sandbox/overlay/sandboxOverlay';
import { tempHome, TempHome, flipByte } from './fixtures/testBase';

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 20_000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe('overlay: build, create, synthesize with real QEMU', function () {
  this.timeout(600_000);
  let th: TempHome;
  let built: BuildResult;

  // Synthesis here goes into a prepared launch (CLOUDLET_SYNTHESIS_OVERLAP=1, not the default): the daemons
  // of the other integration tests take the default order (launch files first, then QEMU).
  const overlapBefore = process.env.CLOUDLET_SYNTHESIS_OVERLAP;
  before(async () => {
    process.env.CLOUDLET_SYNTHESIS_OVERLAP = '1';
    th = await tempHome();
    const spec = loadBuildFile(path.join(projectRoot(), 'test/fixtures/sample-backend'));
    built = await runBuild(th.manager, spec, { base: th.baseId });
  });
  after(async () => {
    if (overlapBefore === undefined) delete process.env.CLOUDLET_SYNTHESIS_OVERLAP; else process.env.CLOUDLET_SYNTHESIS_OVERLAP = overlapBefore;
    await th?.cleanup();
  });

  it('two creations from the same paused sandbox give the same overlay ID', async () => {
    assert.equal(th.manager.get(built.sandbox.id).status, 'paused');
    const again = await createSandboxOverlay(th.manager, built.sandbox.id, { outFile: path.join(th.home, 'again.overlay'), ports: [80] });
    assert.equal(again.overlayId, built.overlay.overlayId);
    assert.ok(fs.readFileSync(again.path).equals(fs.readFileSync(built.overlay.path)));
  });

  it('the overlay holds the installed files and the RAM state, and `overlay info/verify` read it', async () => {
    const m = built.overlay.manifest;
    assert.equal(m.baseId, th.baseId);
    assert.ok(m.breakdown.disk.chunks > 0, 'no disk chunks');
    assert.ok(m.breakdown.ram.chunks > 0, 'no RAM chunks');
    const env = { ...process.env, CLOUDLET_HOME: th.home, CLOUDLET_CLI_MAIN: '1' };
    const cli = ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts')];
    const info = JSON.parse(execFileSync(process.execPath, [...cli, 'overlay', 'info', built.overlay.path, '--json'], { env }).toString());
    assert.equal(info.overlayId, built.overlay.overlayId);
    assert.equal(info.ram.changedChunks, m.breakdown.ram.chunks);
    const text = execFileSync(process.execPath, [...cli, 'overlay', 'verify', built.overlay.overlayId.slice(0, 12), '--base', th.baseId], { env }).toString();
    assert.match(text, /OK \(\d+ segments/);
  });

  it('acceptance 1: remove the sandbox, synthesize: page and next counter value through the forwarded port, no reboot', async () => {
    const base = th.manager.bases.get(th.baseId);
    await th.manager.delete(built.sandbox.id);
    assert.deepEqual(th.manager.list().map((s) => s.id), []);
    const r = await synthesize(th.manager, th.baseId, built.overlay.path, { name: 'synth1' });
    assert.equal(r.sandbox.status, 'running');
    const fwd = r.sandbox.ports.find((p) => p.guest === 80);
    assert.ok(fwd, 'port 80 not forwarded');
    const page = await get(fwd.host, '/index.html');
    assert.equal(page.status, 200);
    assert.match(page.body, /sample back-end/);
    const counter = await get(fwd.host, '/cgi-bin/counter');
    assert.equal(counter.body.trim(), '42'); // 41 was written to guest RAM (tmpfs) at install time
    assert.equal((await get(fwd.host, '/cgi-bin/counter')).body.trim(), '43');
    const facts = await th.manager.exec('synth1', 'cat /proc/sys/kernel/random/boot_id; cut -d" " -f1 /proc/uptime');
    const [bootId, uptime] = facts.stdout.trim().split('\n');
    assert.equal(bootId, base.manifest.guest?.bootId, 'the guest rebooted (boot_id changed)');
    assert.ok(Number(uptime) >= (base.manifest.guest?.uptime ?? 0), `uptime ${uptime} is below the base's ${base.manifest.guest?.uptime}`);
    await th.manager.delete('synth1');
  });

  it('acceptance 3: a damaged or mismatched overlay is refused before the VM runs any guest code, nothing left behind (no sandbox, no QEMU, no files)', async () => {
    const bad = path.join(th.home, 'damaged.overlay');
    fs.copyFileSync(built.overlay.path, bad);
    const r = OverlayReader.open(bad);
    const seg = r.segmentRanges()[0];
    r.close();
    flipByte(bad, seg.offset + 10);
    await assert.rejects(synthesize(th.manager, th.baseId, bad, { name: 'synth-bad' }), (e: unknown) => isCloudletError(e, 'Corrupt') && /is corrupt: its bytes hash to/.test(e.message));
    const trunc = path.join(th.home, 'truncated.overlay');
    fs.writeFileSync(trunc, fs.readFileSync(built.overlay.path).subarray(0, 5000));
    await assert.rejects(synthesize(th.manager, th.baseId, trunc, { name: 'synth-bad' }), /truncated/);
    // A well-formed overlay asking for another VM than its base's (issue 11: 4096 vCPUs reached QEMU).
    const greedy = path.join(th.home, 'greedy.overlay');
    const r2 = OverlayReader.open(built.overlay.path);
    const m = JSON.parse(r2.manifestBytes.toString()) as OverlayManifest;
    const segments = fs.readFileSync(built.overlay.path).subarray(CONTAINER_HEADER_SIZE + r2.manifestBytes.length);
    r2.close();
    m.vmConfig.vcpus = 64;
    const mb = Buffer.from(canonicalJson(m));
    fs.writeFileSync(greedy, Buffer.concat([encodeContainerHeader(mb), mb, segments]));
    await assert.rejects(synthesize(th.manager, th.baseId, greedy, { name: 'synth-bad' }), (e: unknown) => isCloudletError(e, 'Mismatch') && /vmConfig\.vcpus 64 differs from base/.test(e.message));
    assert.deepEqual(th.manager.list().map((s) => s.id), [], 'a sandbox was started');
    // The damaged segment is found while a prepared launch's QEMU waits paused: that QEMU is gone too.
    const qemus = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(path.join(th.home, 'sandboxes')); } catch { return false; }
    });
    assert.deepEqual(qemus, [], 'a QEMU of a refused synthesis is still running');
    assert.deepEqual(fs.existsSync(path.join(th.home, 'sandboxes')) ? fs.readdirSync(path.join(th.home, 'sandboxes')) : [], [], 'a sandbox folder was left');
    const tmp = th.manager.paths.tmp;
    assert.deepEqual(fs.existsSync(tmp) ? fs.readdirSync(tmp) : [], [], 'half-built files left in tmp/');
  });
});
