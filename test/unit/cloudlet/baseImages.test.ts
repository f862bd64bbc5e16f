/**
 * Base images follow the base store (sandbox/cloudlet/baseImages.ts) and the bases folder is
 * watched for changes other processes make (sandbox/base/storeWatch.ts): real SQLite and a real
 * temp folder, a VM layer that only lists bases.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Database from '../../../sandbox/common/sqlite';
import { ImageStore, migrateImages } from '../../../sandbox/cloudlet/imageStore';
import { syncBaseImages, ADVERTISED_OWNER } from '../../../sandbox/cloudlet/baseImages';
import { watchListing } from '../../../sandbox/base/storeWatch';
import type { VmBackend } from '../../../sandbox/cloudlet/vmBackend';

const A = 'a'.repeat(64), B = 'b'.repeat(64);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('base images follow the base store', () => {
  let dir: string;
  let images: ImageStore;
  let held: string[];
  const backend = {
    bases: () => held.map((id) => ({ baseId: id, name: `base-${id[0]}`, ramBytes: 128 << 20, diskBytes: 1 << 30 })),
    hasBase: (id: string) => held.includes(id),
  } as unknown as VmBackend;
  const advertised = () => images.list(undefined).filter((r) => r.properties.cloudlet_type === 'cloudlet_base_disk')
    .map((r) => `${r.owner} ${r.visibility} ${r.status} ${String(r.properties.base_sha256_uuid)[0]}`).sort();

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-baseimages-'));
    const db = new Database(':memory:');
    migrateImages(db);
    images = new ImageStore(db, dir);
    held = [];
  });
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  it('a new base gets one public active image, once; a base gone takes its advertised image along', () => {
    held = [A];
    const first = syncBaseImages(images, backend);
    assert.deepEqual(first.map((c) => [c.change, c.image.name, c.image.min_ram]), [['active', 'base-a', 128]]);
    assert.deepEqual(syncBaseImages(images, backend), [], 'nothing new: nothing done');
    held = [A, B];
    assert.deepEqual(syncBaseImages(images, backend).map((c) => c.image.properties.base_sha256_uuid), [B]);
    assert.deepEqual(advertised(), [`${ADVERTISED_OWNER} public active a`, `${ADVERTISED_OWNER} public active b`]);
    held = [B];
    const gone = syncBaseImages(images, backend);
    assert.deepEqual(gone.map((c) => [c.change, c.image.properties.base_sha256_uuid]), [['deleted', A]]);
    assert.deepEqual(advertised(), [`${ADVERTISED_OWNER} public active b`]);
  });

  it('a base uploaded through Glance keeps its own image: no second one while the upload runs, and it is never dropped by the sync', () => {
    const upload = images.create('project-1', { name: 'uploaded', visibility: 'public', cloudlet_type: 'cloudlet_base_disk' });
    images.setStatus(upload.id, 'saving');
    held = [A];  // the import has put the bundle into the store; the upload has not finished
    assert.deepEqual(syncBaseImages(images, backend), [], 'waits while a base upload is in flight');
    images.setStatus(upload.id, 'active');
    images.update(upload.id, { set: { base_sha256_uuid: A } });
    assert.deepEqual(syncBaseImages(images, backend), [], 'the upload\'s image advertises the base');
    held = [];
    assert.deepEqual(syncBaseImages(images, backend), [], 'an uploaded image is its project\'s: kept');
    assert.deepEqual(advertised(), ['project-1 public active a']);
  });
});

describe('watchListing', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-watch-')); });
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  const until = async (what: string, fn: () => boolean, ms = 5000) => {
    for (const end = Date.now() + ms; !fn();) {
      if (Date.now() > end) throw new Error(`timed out: ${what}`);
      await sleep(20);
    }
  };

  it('an entry renamed in or removed by someone else: one debounced call each; nothing changed, no call', async () => {
    const bases = path.join(dir, 'bases');
    fs.mkdirSync(bases);
    let calls = 0;
    const w = watchListing(bases, () => { calls++; }, { debounceMs: 50, rescanMs: 60_000 });
    try {
      await sleep(150);
      assert.equal(calls, 0);
      // As the store does it: built under tmp/, renamed into place (a burst of events).
      fs.mkdirSync(path.join(dir, 'tmp', A), { recursive: true });
      for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(dir, 'tmp', A, `f${i}`), 'x');
      fs.renameSync(path.join(dir, 'tmp', A), path.join(bases, A));
      await until('the call for the new base', () => calls === 1);
      fs.writeFileSync(path.join(bases, A, 'f0'), 'y');  // a file inside a base: the listing is the same
      await sleep(200);
      assert.equal(calls, 1);
      fs.renameSync(path.join(bases, A), path.join(dir, 'tmp', 'deleting'));
      await until('the call for the removal', () => calls === 2);
    } finally { w.close(); }
  });

  it('a folder that does not exist yet is found by the rescans, then watched', async () => {
    const bases = path.join(dir, 'bases');
    let calls = 0;
    const w = watchListing(bases, () => { calls++; }, { debounceMs: 20, rescanMs: 100 });
    try {
      fs.mkdirSync(path.join(bases, B), { recursive: true });
      await until('the rescan to see the first base', () => calls === 1);
      fs.mkdirSync(path.join(bases, A));
      await until('the second base', () => calls === 2);
    } finally { w.close(); }
    fs.mkdirSync(path.join(bases, 'c'));
    await sleep(300);
    assert.equal(calls, 2, 'closed: no more calls');
  });
});
