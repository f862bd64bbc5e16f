/**
 * Acceptance 4 of issue 2: killing the process that manages a sandbox leaves no orphan; the next
 * start adopts the QEMU or ends it, and says which. The manager runs in a child process that the
 * test kills with SIGKILL (no clean-up code runs in it).
 */
import { strict as assert } from 'assert';
import { spawn, type ChildProcess } from 'child_process';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { processState } from '../../sandbox/qemu/process';
import { SandboxManager } from '../../sandbox/sandboxes/sandboxManager';
import { tempHome, type TempHome } from './fixtures/testBase';

/** Starts `cloudlet sandbox resume` or a long-lived manager in a child; resolves when `marker` shows on stderr. */
function child(args: string[], env: NodeJS.ProcessEnv, marker: RegExp): Promise<{ p: ChildProcess; out: string }> {
  const root = projectRoot();
  const p = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child did not reach ${marker}: ${out}`)), 240_000);
    const on = (d: Buffer) => { out += d.toString(); if (marker.test(out)) { clearTimeout(t); resolve({ p, out }); } };
    p.stdout!.on('data', on);
    p.stderr!.on('data', on);
    p.on('exit', (code) => { clearTimeout(t); reject(new Error(`child exited ${code}: ${out}`)); });
  });
}

async function killHard(p: ChildProcess): Promise<void> {
  p.removeAllListeners('exit');
  await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGKILL'); });
}

describe('no orphan QEMU after the managing process is killed', function () {
  this.timeout(600_000);
  let th: TempHome;
  before(async () => { th = await tempHome(); });
  after(async () => { await th?.cleanup(); });

  it('a killed daemon-like manager: the next start adopts its running QEMU and says so', async () => {
    const script = path.join(projectRoot(), 'test/integration/fixtures/holdSandbox.ts');
    const c = await child([script, th.home, th.baseId, 'held'], {}, /HOLDING/);
    await killHard(c.p);
    const pid = th.manager.get('held').pid!;
    assert.equal(processState(pid, undefined) === 'gone', false, 'QEMU outlives its manager');
    const m = new SandboxManager({ root: th.home });
    const reports = await m.adopt();
    const r = reports.find((x) => x.id === 'held')!;
    assert.equal(r.action, 'adopted', r.message);
    assert.match(r.message, new RegExp(`adopted QEMU pid ${pid}`));
    assert.equal((await m.exec('held', 'echo still-here')).stdout, 'still-here\n');
    m.close();
    // A later start finds it managed by nobody on purpose: attached quietly, no second "adopted".
    const m2 = new SandboxManager({ root: th.home });
    assert.equal((await m2.adopt()).find((x) => x.id === 'held')!.action, 'attached');
    await m2.delete('held');
    m2.close();
  });

  it('a CLI killed in the middle of a resume: the next start ends the half-started QEMU and says so', async () => {
    const cli = path.join(projectRoot(), 'sandbox/cli/main.ts');
    const c = await child([cli, 'sandbox', 'resume', th.baseId, '--name', 'half'], { CLOUDLET_HOME: th.home, CLOUDLET_FAILPOINT: 'resume-after-qemu-start' }, /FAILPOINT .* qemu=(\d+)/);
    const pid = Number(/qemu=(\d+)/.exec(c.out)![1]);
    await killHard(c.p);
    assert.equal(processState(pid, undefined) === 'gone', false, 'QEMU outlives the CLI');
    const m = new SandboxManager({ root: th.home });
    const reports = await m.adopt();
    const r = reports.find((x) => x.id === 'half')!;
    assert.equal(r.action, 'ended', r.message);
    assert.match(r.message, new RegExp(`ended QEMU pid ${pid}`));
    assert.equal(processState(pid, undefined), 'gone');
    assert.deepEqual(m.list().map((s) => s.id), [], 'the half-made sandbox is removed');
    m.close();
  });

  it('a QEMU that died while nobody watched is reported gone and marked stopped', async () => {
    const m = new SandboxManager({ root: th.home });
    const s = await m.resume(th.baseId, { name: 'dies' });
    m.close();
    process.kill(s.pid!, 'SIGKILL');
    const m2 = new SandboxManager({ root: th.home });
    const deadline = Date.now() + 10_000;
    while (processState(s.pid, undefined) !== 'gone' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const r = (await m2.adopt()).find((x) => x.id === 'dies')!;
    assert.equal(r.action, 'gone', r.message);
    assert.equal(m2.get('dies').status, 'stopped');
    await m2.delete('dies');
    m2.close();
  });
});
