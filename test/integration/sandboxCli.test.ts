/** The `cloudlet guest|base|sandbox` commands as a user runs them (real QEMU, temp CLOUDLET_HOME). */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { projectRoot } from '../../sandbox/common/paths';
import { tempHome, type TempHome } from './fixtures/testBase';

describe('cloudlet CLI: base and sandbox commands (real QEMU)', function () {
  this.timeout(600_000);
  let th: TempHome;
  const cli = (args: string[], input?: string) => spawnSync(process.execPath, ['--import', 'tsx', path.join(projectRoot(), 'sandbox/cli/main.ts'), ...args], {
    cwd: projectRoot(), encoding: 'utf8', input, env: { ...process.env, CLOUDLET_HOME: th.home }, timeout: 240_000,
  });
  before(async () => { th = await tempHome(); });
  after(async () => { await th?.cleanup(); });

  it('base list/show/verify in text and JSON', () => {
    const list = JSON.parse(cli(['base', 'list', '--json']).stdout);
    assert.equal(list[0].baseId, th.baseId);
    assert.match(cli(['base', 'list']).stdout, new RegExp(th.baseId.slice(0, 12)));
    const show = JSON.parse(cli(['base', 'show', th.baseId.slice(0, 10), '--json']).stdout);
    assert.equal(show.vm.cpuModel, 'qemu64');
    assert.match(cli(['base', 'verify', th.baseId]).stdout, /ok/);
  });

  it('sandbox resume/exec/list/console/stop/delete; exec exits with the guest status; a second resume is refused', () => {
    const r = cli(['sandbox', 'resume', th.baseId, '--name', 'c1', '--port', '8080', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.status, 'running');
    assert.deepEqual(info.ports.map((p: { guest: number }) => p.guest).sort(), [80, 8080]);
    const e = cli(['sandbox', 'exec', 'c1', '--', 'echo out; echo err >&2; exit 3']);
    assert.equal(e.status, 3);
    assert.equal(e.stdout, 'out\n');
    assert.match(e.stderr, /err/);
    const again = cli(['sandbox', 'resume', th.baseId, '--name', 'c1']);
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /already running/);
    const list = cli(['sandbox', 'list']);
    assert.match(list.stdout, /c1\s+running/);
    assert.match(list.stdout, /127\.0\.0\.1:\d+->8080/);
    // The cached base's CPU is plain qemu64: no SSSE3 (the next test adds it with +ssse3).
    assert.equal(cli(['sandbox', 'exec', 'c1', '--', 'grep -c -w ssse3 /proc/cpuinfo']).stdout.trim(), '0');
    const con = cli(['sandbox', 'console', 'c1'], 'echo console-$((40+2))\n');
    assert.match(con.stdout, /console-42/);
    assert.match(cli(['sandbox', 'stop', 'c1']).stdout, /stopped/);
    assert.match(cli(['sandbox', 'delete', 'c1']).stdout, /deleted c1/);
    assert.match(cli(['sandbox', 'list']).stdout, /no sandboxes/);
  });

  it('12.7: base create --cpu qemu64,+ssse3 keeps the portable model plus one flag: the guest sees SSSE3; a flag without +/- is refused', () => {
    const bad = cli(['base', 'create', '--test-guest', '--name', 'bad-cpu', '--cpu', 'qemu64,ssse3', '--ram', '128']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /not a feature flag/);
    const c = cli(['base', 'create', '--test-guest', '--name', 'ssse3', '--cpu', 'qemu64,+ssse3', '--ram', '128']);
    assert.equal(c.status, 0, c.stderr);
    const id = c.stdout.trim().split('\n').pop()!;
    assert.equal(JSON.parse(cli(['base', 'show', id, '--json']).stdout).vm.cpuModel, 'qemu64,+ssse3');
    assert.equal(cli(['sandbox', 'resume', id, '--name', 'c2']).status, 0);
    assert.equal(cli(['sandbox', 'exec', 'c2', '--', 'grep -c -w ssse3 /proc/cpuinfo']).stdout.trim(), '1');
    assert.match(cli(['sandbox', 'delete', 'c2']).stdout, /deleted c2/);
  });
});
