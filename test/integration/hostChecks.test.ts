/**
 * Acceptance 3 of issue 2, host side: a missing QEMU binary names the apt command; a CPU model the
 * host cannot provide is refused before QEMU starts. Neither leaves anything behind.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { projectRoot } from '../../sandbox/common/paths';
import { replaceWithCopy, killQemusUnder, tempHome, type TempHome } from './fixtures/testBase';

describe('host checks before a sandbox starts', function () {
  this.timeout(300_000);
  let th: TempHome;
  before(async () => { th = await tempHome(); });
  after(async () => { await th?.cleanup(); });

  it('a missing QEMU binary gives the apt command that installs it (API and CLI)', async () => {
    const saved = process.env.CLOUDLET_QEMU;
    process.env.CLOUDLET_QEMU = '/nonexistent/qemu-system-x86_64';
    try {
      await assert.rejects(th.manager.resume(th.baseId, { name: 'noqemu' }), (e) =>
        isCloudletError(e, 'MissingTool') && e.hint === 'apt-get install qemu-system-x86 qemu-utils');
    } finally {
      if (saved === undefined) delete process.env.CLOUDLET_QEMU; else process.env.CLOUDLET_QEMU = saved;
    }
    assert.deepEqual(th.manager.list(), []);
    // The CLI, with QEMU simply absent from PATH (an empty folder).
    const root = projectRoot();
    const emptyBin = fs.mkdtempSync(path.join(th.home, 'bin-'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'sandbox/cli/main.ts'), 'sandbox', 'resume', th.baseId], {
      cwd: root, encoding: 'utf8', env: { ...process.env, CLOUDLET_HOME: th.home, PATH: emptyBin },
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /qemu-system-x86_64 is not installed/);
    assert.match(r.stderr, /apt-get install qemu-system-x86 qemu-utils/);
    assert.deepEqual(th.manager.list(), []);
  });

  it('a base whose CPU model this host cannot provide is refused before QEMU starts', async () => {
    const manifest = path.join(th.home, 'bases', th.baseId, 'manifest.json');
    replaceWithCopy(manifest);
    const original = fs.readFileSync(manifest, 'utf8');
    const m = JSON.parse(original);
    m.vm.cpuModel = 'EPYC-Genoa'; // added in QEMU 8.1: a real model this QEMU 7.2 does not know
    fs.writeFileSync(manifest, JSON.stringify(m));
    try {
      await assert.rejects(th.manager.resume(th.baseId, { name: 'badcpu' }), (e) =>
        isCloudletError(e, 'Mismatch') && /EPYC-Genoa/.test(e.message) && /cannot provide/.test(e.message));
      assert.deepEqual(th.manager.list(), [], 'no sandbox folder');
      assert.deepEqual(killQemusUnder(th.home), [], 'no QEMU was started');
    } finally { fs.writeFileSync(manifest, original); }
  });
});
