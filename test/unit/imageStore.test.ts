import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Database from '../../sandbox/common/sqlite';
import { ImageStore, migrateImages } from '../../sandbox/cloudlet/imageStore';

describe('ImageStore', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagestore-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('adoptFile hashes an overlay larger than one Buffer (over 2 GiB) and records its size', function () {
    this.timeout(180_000);
    const db = new Database(':memory:');
    migrateImages(db);
    const store = new ImageStore(db, dir);
    const img = store.create('p', { name: 'big', disk_format: 'raw', container_format: 'bare' });
    const file = path.join(dir, 'big.overlay');
    const size = 2 ** 31 + 4097; // sparse: zeros except the last bytes
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, Buffer.from('tail'), 0, 4, size - 4);
    fs.closeSync(fd);
    const md5 = crypto.createHash('md5'), sha512 = crypto.createHash('sha512');
    const zeros = Buffer.alloc(1 << 24);
    for (let left = size - 4; left > 0; left -= Math.min(left, zeros.length)) {
      md5.update(zeros.subarray(0, Math.min(left, zeros.length)));
      sha512.update(zeros.subarray(0, Math.min(left, zeros.length)));
    }
    md5.update('tail'); sha512.update('tail');
    const row = store.adoptFile(img.id, file);
    assert.equal(row.status, 'active');
    assert.equal(row.size, size);
    assert.equal(row.checksum, md5.digest('hex'));
    assert.equal(row.os_hash_value, sha512.digest('hex'));
    assert.ok(fs.existsSync(store.filePath(img.id)));
    db.close();
  });
});
