/**
 * Acceptance 3 of issue 2 (bad input gets a clear error and changes nothing) for base bundles:
 * export/import round trip, a flipped RAM byte refused at import and at resume naming the file,
 * a truncated device state refused, a failed create leaves nothing behind.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { BaseStore } from '../../sandbox/base/store';
import { SandboxManager } from '../../sandbox/sandboxes/sandboxManager';
import { readTarIndex } from '../../sandbox/base/tarFile';
import { ensureTestBase, flipByte, killQemusUnder, replaceWithCopy, tempHome, type TempHome } from './fixtures/testBase';

describe('base bundles: export, import and refusing damaged files (real QEMU)', function () {
  this.timeout(600_000);
  let th: TempHome;
  let exported: string;
  const homes: string[] = [];
  const newHome = () => { const h = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-')); homes.push(h); return h; };

  before(async () => {
    th = await tempHome();
    exported = path.join(th.home, 'base.tar');
    await new BaseStore(th.home).export(th.baseId, exported);
  });
  after(async () => {
    await th?.cleanup();
    for (const h of homes) { killQemusUnder(h); fs.rmSync(h, { recursive: true, force: true }); }
  });

  it('export is one file; import into another store checks it and gives the same base ID, which resumes', async () => {
    const home = newHome();
    const store = new BaseStore(home);
    const r = await store.import(exported);
    assert.equal(r.bundle.id, th.baseId);
    assert.equal(r.alreadyPresent, false);
    await store.verify(th.baseId);
    const again = await store.import(exported);
    assert.equal(again.alreadyPresent, true);
    const m = new SandboxManager({ root: home });
    try {
      await m.resume(th.baseId, { name: 'imported' });
      assert.equal((await m.exec('imported', 'echo ok')).stdout, 'ok\n');
    } finally { await m.delete('imported').catch(() => undefined); m.close(); }
  });

  it('one flipped byte in the RAM file is refused at import, naming the file, and nothing is imported', async () => {
    const members = await readTarIndex(exported);
    const ram = members.find((m) => m.name === 'ram.raw')!;
    const bad = path.join(newHome(), 'bad.tar');
    fs.copyFileSync(exported, bad);
    flipByte(bad, ram.offset + 4096 * 7 + 123);
    const home = newHome();
    await assert.rejects(new BaseStore(home).import(bad), (e) =>
      isCloudletError(e, 'Corrupt') && /ram\.raw/.test(e.message) && /chunk 7\b/.test(e.message));
    assert.deepEqual(new BaseStore(home).list(), []);
    assert.deepEqual(fs.readdirSync(path.join(home, 'tmp')), [], 'no half-imported files left');
  });

  it('one flipped byte in the RAM file is refused at resume, naming the file, before QEMU starts', async () => {
    const home = newHome();
    await new BaseStore(home).import(exported);
    const ram = path.join(home, 'bases', th.baseId, 'ram.raw');
    flipByte(ram, 4096 * 3 + 1);
    const m = new SandboxManager({ root: home });
    await assert.rejects(m.resume(th.baseId, { name: 'x' }), (e) => isCloudletError(e, 'Corrupt') && /ram\.raw/.test(e.message));
    assert.deepEqual(m.list(), []);
    assert.deepEqual(killQemusUnder(home), [], 'no QEMU was started');
    await assert.rejects(new BaseStore(home).verify(th.baseId), (e) => isCloudletError(e, 'Corrupt') && /ram\.raw/.test(e.message));
  });

  it('a truncated device-state file is refused at resume, verify and import', async () => {
    const home = newHome();
    await new BaseStore(home).import(exported);
    const state = path.join(home, 'bases', th.baseId, 'state.bin');
    replaceWithCopy(state);
    fs.truncateSync(state, Math.floor(fs.statSync(state).size / 2));
    const m = new SandboxManager({ root: home });
    await assert.rejects(m.resume(th.baseId), (e) => isCloudletError(e, 'Corrupt') && /state\.bin is truncated/.test(e.message));
    assert.deepEqual(killQemusUnder(home), []);
    await assert.rejects(new BaseStore(home).verify(th.baseId), /state\.bin is truncated/);
    // The same damage inside an export file.
    const badExport = path.join(home, 'trunc.tar');
    await new BaseStore(home).export(th.baseId, badExport).catch((e) => assert.match(String(e), /state\.bin is truncated/));
    assert.ok(!fs.existsSync(badExport), 'export refuses a damaged base too');
  });

  it('base create that never gets ready fails with the console tail and leaves nothing behind', async () => {
    const tb = await ensureTestBase();
    const home = newHome();
    const store = new BaseStore(home);
    await assert.rejects(store.create({
      name: 'never', disk: tb.guest.disk, kernel: tb.guest.kernel, initrd: tb.guest.initrd, append: tb.guest.append, ramMiB: 128,
      readiness: { consoleMarker: 'this marker never appears', agent: false, timeoutMs: 3000 },
    }), (e) => isCloudletError(e, 'Timeout') && /did not print/.test(e.message));
    assert.deepEqual(store.list(), []);
    assert.deepEqual(fs.readdirSync(path.join(home, 'tmp')), []);
    assert.deepEqual(killQemusUnder(home), [], 'its QEMU was ended');
  });
});
