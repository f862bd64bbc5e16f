/**
 * Host errors as users see them (issue 11.11): server faults and API answers carry no absolute path
 * of the daemon host (data-folder paths as DATA/..., others as their last component); a full disk
 * is reported naming the file and the stage, checked on a real 512 KiB tmpfs for a handoff round
 * and for a synthesis (apply into a folder, and into a prepared launch with its base RAM copy), each
 * leaving no partial folder.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CloudletError } from '../../sandbox/common/errors';
import { diskFullError, hideHostPaths, registerDataRoot } from '../../sandbox/common/hostErrors';
import { serverFault } from '../../sandbox/cloudlet/serverStore';
import { ImageStore, migrateImages } from '../../sandbox/cloudlet/imageStore';
import Database from '../../sandbox/common/sqlite';
import { Readable } from 'stream';
import { applyOverlay, createOverlay, OverlayReader, SegmentCompressor } from '../../sandbox/overlay';
import { CHUNK_SIZE } from '../../sandbox/overlay/format';
import { RoundApplier } from '../../sandbox/handoff/roundApplier';
import { openRound } from '../../sandbox/handoff/roundReader';
import { makePair, type GeneratedPair } from './helpers/generatedImages';
import { applyOverlayInto, ramChunksOf } from '../../sandbox/overlay/apply';
import { prepareFiles } from '../../sandbox/sandboxes/prepareFiles';
import type { SandboxFiles } from '../../sandbox/sandboxes/layout';
import type { BaseBundle } from '../../sandbox/base/store';
import type { VmConfig } from '../../sandbox/qemu/vmconfig';
import { encodeRounds, pieces } from './helpers/handoffRounds';

describe('host errors: no host paths in faults, a full disk named by file and stage', function () {
  this.timeout(120_000);

  it('hides host paths: data-folder paths as DATA/..., other absolute paths by their last component; API paths and URLs stay', () => {
    registerDataRoot('/srv/cloudlet-data');
    const msg = 'RAM file /srv/cloudlet-data/sandboxes/sb-1/ram.raw is 5 bytes; QEMU (/usr/bin/qemu-system-x86_64): could not open \'/home/op/.cache/kernel\'; '
      + 'see /tmp/cloudlet-xyz/qemu.log, no such resource: GET /compute/v2.1/servers, http://127.0.0.1:8774/image/v2/images/abc';
    const shown = hideHostPaths(msg);
    assert.equal(shown, 'RAM file DATA/sandboxes/sb-1/ram.raw is 5 bytes; QEMU (…/qemu-system-x86_64): could not open \'…/kernel\'; '
      + 'see …/qemu.log, no such resource: GET /compute/v2.1/servers, http://127.0.0.1:8774/image/v2/images/abc');
    assert.equal(hideHostPaths('data=/srv/cloudlet-data'), 'data=DATA');
  });

  it('a server fault shows no host path, in its message or its hint', () => {
    const f = serverFault(new CloudletError('Corrupt', 'device state /var/lib/cloudlet/tmp/synth-1/state.bin is truncated', { hint: 'delete /var/lib/cloudlet/tmp/synth-1 and retry' }));
    assert.doesNotMatch(JSON.stringify(f), /\/var\/lib/);
    assert.match(f.message, /device state …\/state\.bin is truncated/);
    assert.match(f.cloudlet_error?.hint ?? '', /delete …\/synth-1 and retry/);
  });

  it('maps ENOSPC (an errno or a tool saying so) to Unavailable/507 naming file and stage; other errors pass unchanged', () => {
    const e = diskFullError(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), 'DATA/tmp/x/ram.raw', 'applying handoff round 2');
    assert.ok(e instanceof CloudletError);
    assert.equal(e.status, 507);
    assert.equal(e.message, 'no space left on the device while applying handoff round 2: writing DATA/tmp/x/ram.raw failed');
    assert.ok(diskFullError(new CloudletError('Internal', 'cp: error writing \'x\': No space left on device'), 'x', 's') instanceof CloudletError);
    const other = new Error('EIO');
    assert.equal(diskFullError(other, 'f', 's'), other);
  });

  describe('on a full filesystem (512 KiB tmpfs)', () => {
    let tmp: string, small: string;
    let pair: GeneratedPair;
    let compressor: SegmentCompressor;
    before(function () {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'host-errors-'));
      small = path.join(tmp, 'small');
      fs.mkdirSync(small);
      try { execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', small], { stdio: 'pipe' }); } catch (e) {
        console.log(`      cannot mount a tmpfs here (${(e as Error).message.split('\n')[0]}): skipped`);
        this.skip();
      }
      pair = makePair(path.join(tmp, 'pair'));
      compressor = new SegmentCompressor(2);
    });
    after(async () => {
      await compressor?.close();
      try { execFileSync('umount', [small], { stdio: 'pipe' }); } catch { /* not mounted */ }
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    it('a handoff round that does not fit: refused naming the file and the round', async () => {
      const rounds = await encodeRounds(pair, compressor);
      const dir = path.join(small, 'session');
      fs.mkdirSync(dir);
      const ramFile = path.join(dir, 'ram.raw');
      fs.writeFileSync(ramFile, '');
      fs.truncateSync(ramFile, pair.ram.length);  // sparse, as a prepared launch's copy on a reflink filesystem
      const a = await RoundApplier.create(dir, { ram: pair.base.ramFile, disk: pair.base.diskFile }, { ramFile, diskLayer: path.join(dir, 'disk.qcow2') });
      try {
        const rs = await openRound(pieces(rounds[0]), 0, { chunks: { ram: pair.ram.length / CHUNK_SIZE, disk: pair.disk.length / CHUNK_SIZE }, maxBytes: 1 << 30 });
        await assert.rejects(a.apply(rs.segments(), compressor), (e: unknown) => {
          assert.ok(e instanceof CloudletError, String(e));
          assert.equal(e.status, 507);
          assert.match(e.message, /^no space left on the device while applying handoff round 0: writing .*\/session\/(ram\.raw|disk\.delta) failed$/);
          return true;
        });
      } finally { a.close(); fs.rmSync(dir, { recursive: true, force: true }); }
    });

    it('a synthesis whose launch files do not fit: refused naming the file and the stage, no partial folder left', async () => {
      const made = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'overlays'), compressor });
      const r = OverlayReader.open(made.path);
      try {
        await assert.rejects(applyOverlay(r, r, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, { outDir: path.join(small, 'launch'), compressor }), (e: unknown) => {
          assert.ok(e instanceof CloudletError, String(e));
          assert.equal(e.status, 507);
          assert.match(e.message, /^no space left on the device while (synthesis: .*): writing .*launch\.partial-[^/]+\/(ram\.raw|disk\.qcow2|state\.bin) failed$/);
          return true;
        });
      } finally { r.close(); }
      assert.deepEqual(fs.readdirSync(small), [], 'nothing left on the full filesystem');
    });

    it('a synthesis into a prepared launch that does not fit (its base RAM copy leaving out the overlay\'s pages): the copy and the apply refused naming the file and the stage', async () => {
      const made = await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'overlays-into'), compressor });
      const r = OverlayReader.open(made.path);
      const dir = path.join(small, 'prepared');
      fs.mkdirSync(dir);
      const files = { dir, ram: path.join(dir, 'ram.raw'), disk: path.join(dir, 'disk.qcow2') } as SandboxFiles;
      const diskFull = (stages: RegExp) => (e: unknown) => {
        assert.ok(e instanceof CloudletError, String(e));
        assert.equal(e.status, 507);
        assert.match(e.message, new RegExp(`^no space left on the device while (${stages.source}): writing .*/prepared/(ram\\.raw|disk\\.qcow2) failed$`));
        return true;
      };
      try {
        // As SandboxManager.prepareLaunch does for synthesizeIntoPrepared (which then discards the launch).
        const prepared = prepareFiles({ ram: pair.base.ramFile, disk: pair.base.diskFile } as BaseBundle, pair.launch.vmConfig as VmConfig, files, { from: 'base' },
          { ramInBackground: true, ramLeaveOut: { chunks: ramChunksOf(r.manifest), chunkSize: CHUNK_SIZE } });
        const into = { files: prepared.then((p) => ({ ramFile: files.ram, diskLayer: files.disk, ramLeftOut: p.ramLeftOut })), ramReady: prepared.then((p) => p.ramReady), diskOpened: prepared.then(() => undefined) };
        await assert.rejects(applyOverlayInto(r, r, { baseId: pair.baseId, ramFile: pair.base.ramFile, diskFile: pair.base.diskFile }, into, { compressor }),
          diskFull(/copying the base RAM for the VM|synthesis: writing the launch RAM and disk|synthesis: finishing the disk layer/));
        const { ramLeftOut, ramReady } = await prepared;
        assert.equal(ramLeftOut, true);
        // The copy alone (1.7 MB of base data outside the overlay's pages) does not fit either.
        await assert.rejects(ramReady, diskFull(/copying the base RAM for the VM/));
      } finally { r.close(); fs.rmSync(dir, { recursive: true, force: true }); }
    });

    it('an image upload that does not fit: refused naming the file and the stage, the image back to queued, no temp file left', async () => {
      const db = new Database(':memory:');
      migrateImages(db);
      const store = new ImageStore(db, path.join(small, 'data'));
      const row = store.create('p1', { name: 'big', disk_format: 'raw', container_format: 'bare' });
      const data = Readable.from((function* () { for (let i = 0; i < 16; i++) yield Buffer.alloc(64 << 10, i + 1); })());
      try {
        await assert.rejects(store.upload(row.id, data, 1 << 30), (e: unknown) => {
          assert.ok(e instanceof CloudletError, String(e));
          assert.equal(e.status, 507);
          assert.match(e.message, /^no space left on the device while image upload: writing the image data: writing .*image-[^/]+ failed$/);
          return true;
        });
        assert.equal(store.getRow(row.id)?.status, 'queued');
        assert.deepEqual(fs.readdirSync(path.join(small, 'data', 'images')), []);
      } finally { db.close(); fs.rmSync(path.join(small, 'data'), { recursive: true, force: true }); }
    });
  });
});
