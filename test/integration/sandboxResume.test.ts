/**
 * Acceptance 1 and 2 of issue 2 with real QEMU (TCG): resume continues the base's guest, several
 * sandboxes of one base are independent, a guest web server answers on its forwarded loopback
 * port, a second resume of a running sandbox is refused, snapshot/launch/stop/continue work.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { BaseStore } from '../../sandbox/base/store';
import { processState } from '../../sandbox/qemu/process';
import { tempHome, type TempHome } from './fixtures/testBase';

function httpGet(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: 20_000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe('sandbox VMs resumed from the test base (real QEMU)', function () {
  this.timeout(600_000);
  let th: TempHome;
  before(async () => { th = await tempHome(); });
  after(async () => { await th?.cleanup(); });

  it('resume continues the base guest: same boot id, uptime and counter go on from the base values', async () => {
    const base = new BaseStore(th.home).get(th.baseId);
    const facts = base.manifest.guest!;
    assert.ok(facts.bootId && facts.uptime !== undefined && facts.counter !== undefined, 'the base recorded guest facts');
    const s = await th.manager.resume(th.baseId, { name: 'cont' });
    assert.equal(s.status, 'running');
    const r = await th.manager.exec('cont', 'cat /proc/sys/kernel/random/boot_id; cut -d" " -f1 /proc/uptime; cat /run/counter', { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    const [bootId, uptime, counter] = r.stdout.trim().split('\n');
    assert.equal(bootId, facts.bootId, 'a boot would have a new boot id');
    assert.ok(Number(uptime) >= facts.uptime!, `uptime ${uptime} continues from ${facts.uptime}`);
    assert.ok(Number(counter) >= facts.counter!, `counter ${counter} continues from ${facts.counter}`);
    const r2 = await th.manager.exec('cont', 'cat /run/counter', { timeoutMs: 60_000 });
    await new Promise((res) => setTimeout(res, 2500));
    const r3 = await th.manager.exec('cont', 'cat /run/counter', { timeoutMs: 60_000 });
    assert.ok(Number(r3.stdout) > Number(r2.stdout), 'the guest keeps running after resume');
  });

  it('two sandboxes of one base run at once; a file written in one is absent in the other', async () => {
    await th.manager.resume(th.baseId, { name: 'one' });
    await th.manager.resume(th.baseId, { name: 'two' });
    assert.deepEqual(th.manager.list().filter((s) => s.status === 'running').map((s) => s.id).sort(), ['cont', 'one', 'two']);
    const w = await th.manager.exec('one', 'echo only-in-one > /root/marker && sync && cat /root/marker');
    assert.equal(w.stdout, 'only-in-one\n');
    const r = await th.manager.exec('two', 'cat /root/marker');
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /No such file/);
    // The base disk itself never changes: a new sandbox does not see it either.
    await th.manager.resume(th.baseId, { name: 'three' });
    assert.notEqual((await th.manager.exec('three', 'cat /root/marker')).exitCode, 0);
    await th.manager.delete('three');
  });

  it('busybox httpd in a sandbox answers on its forwarded 127.0.0.1 port', async () => {
    const s = th.manager.get('one');
    const fwd = s.ports.find((p) => p.guest === 80);
    assert.ok(fwd, 'the base declares port 80');
    const r = await th.manager.exec('one', 'echo hello-from-sandbox > /www/hello.txt; cp /www/hello.txt /www/index.html; httpd -p 80 -h /www && echo started');
    assert.equal(r.stdout.trim(), 'started', r.stderr);
    const res = await httpGet(fwd.host);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello-from-sandbox\n');
    // A port added while it runs (hostfwd_add) works too.
    await th.manager.exec('one', 'httpd -p 8081 -h /www');
    const s2 = await th.manager.addPort('one', 8081);
    const p2 = s2.ports.find((p) => p.guest === 8081)!;
    assert.equal((await httpGet(p2.host)).body, 'hello-from-sandbox\n');
  });

  it('a second resume of a running sandbox is refused and says so', async () => {
    await assert.rejects(th.manager.resume(th.baseId, { name: 'one' }), (e) =>
      isCloudletError(e, 'Conflict') && /already running/.test(e.message));
    assert.equal(th.manager.get('one').status, 'running');
  });

  it('copyIn puts a host file into the guest', async () => {
    const f = path.join(th.home, 'payload.sh');
    fs.writeFileSync(f, '#!/bin/sh\necho payload-ran "$@"\n', { mode: 0o755 });
    await th.manager.copyIn('two', f, '/opt/app/payload.sh');
    const r = await th.manager.exec('two', '/opt/app/payload.sh x');
    assert.equal(r.stdout, 'payload-ran x\n');
  });

  it('snapshot pauses with consistent files; launch() starts a copy from them; unpause continues the original', async () => {
    await th.manager.exec('two', 'echo snap-state > /root/snap && sync');
    const snap = await th.manager.snapshot('two');
    assert.equal(th.manager.get('two').status, 'paused');
    assert.equal(fs.statSync(snap.ramFile).size, snap.vmConfig.ramBytes);
    assert.ok(snap.deviceStateBytes > 0 && fs.statSync(snap.deviceState).size === snap.deviceStateBytes);
    // Prepare launch files the way synthesis would: a private RAM file and a disk layer.
    const work = path.join(th.home, 'tmp', 'launch');
    fs.mkdirSync(work, { recursive: true });
    fs.copyFileSync(snap.ramFile, path.join(work, 'ram.raw'));
    fs.copyFileSync(snap.diskLayer, path.join(work, 'disk.qcow2'));
    fs.copyFileSync(snap.deviceState, path.join(work, 'state.bin'));
    await th.manager.unpause('two');
    assert.equal((await th.manager.exec('two', 'cat /root/snap')).stdout, 'snap-state\n');
    const l = await th.manager.launch({ baseId: snap.baseId, diskLayer: path.join(work, 'disk.qcow2'), ramFile: path.join(work, 'ram.raw'), deviceState: path.join(work, 'state.bin'), vmConfig: snap.vmConfig, name: 'launched' });
    assert.equal(l.status, 'running');
    assert.equal((await th.manager.exec('launched', 'cat /root/snap; cat /opt/app/payload.sh | head -1')).stdout, 'snap-state\n#!/bin/sh\n');
    await th.manager.delete('launched');
  });

  it('launch() with a damaged device state is refused, naming the file, and leaves nothing', async () => {
    const snap = await th.manager.snapshot('two');
    const work = path.join(th.home, 'tmp', 'badlaunch');
    fs.mkdirSync(work, { recursive: true });
    fs.copyFileSync(snap.ramFile, path.join(work, 'ram.raw'));
    fs.copyFileSync(snap.diskLayer, path.join(work, 'disk.qcow2'));
    fs.copyFileSync(snap.deviceState, path.join(work, 'state.bin'));
    await th.manager.unpause('two');
    fs.truncateSync(path.join(work, 'state.bin'), Math.floor(snap.deviceStateBytes / 2));
    await assert.rejects(th.manager.launch({ baseId: snap.baseId, diskLayer: path.join(work, 'disk.qcow2'), ramFile: path.join(work, 'ram.raw'), deviceState: path.join(work, 'state.bin'), vmConfig: snap.vmConfig, name: 'badlaunch' }),
      (e) => isCloudletError(e, 'Corrupt') && e.message.includes(path.join(work, 'state.bin')));
    assert.ok(!th.manager.list().some((s) => s.id === 'badlaunch'));
  });

  it('stop saves the state; resume with the same name continues it', async () => {
    await th.manager.exec('one', 'echo before-stop > /root/kept; echo mem-only > /run/volatile');
    const stopped = await th.manager.stop('one');
    assert.equal(stopped.status, 'stopped');
    const again = await th.manager.resume(th.baseId, { name: 'one' });
    assert.equal(again.status, 'running');
    const r = await th.manager.exec('one', 'cat /root/kept /run/volatile');
    assert.equal(r.stdout, 'before-stop\nmem-only\n', 'disk and RAM both continue (tmpfs content survives)');
  });

  it('snapshot then stop without unpausing keeps the snapshot state; the sandbox continues from it', async () => {
    await th.manager.exec('two', 'echo at-snapshot > /run/mark');
    const a = await th.manager.snapshot('two');
    const b = await th.manager.snapshot('two');
    assert.equal(b.deviceStateSha256, a.deviceStateSha256, 'a second snapshot of a VM that did not run is the same state');
    await th.manager.stop('two');
    await th.manager.resume(th.baseId, { name: 'two' });
    assert.equal((await th.manager.exec('two', 'cat /run/mark')).stdout, 'at-snapshot\n');
  });

  it('delete ends the QEMU and removes the sandbox', async () => {
    const s = th.manager.get('cont');
    await th.manager.delete('cont');
    assert.ok(!fs.existsSync(s.dir));
    assert.equal(processState(s.pid, undefined), 'gone');
  });
});
