/**
 * The blob cache's scopes (a daemon's projects): a scope reads only blobs a request of its own
 * downloaded, whatever digests it knows; the bytes are kept once (hard links); a damaged entry is
 * dropped; a scope name cannot lead out of the cache folder.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BlobCache, scopeDirName } from '../../../sandbox/registry/blobCache';
import { sha256Digest } from '../../../sandbox/registry/digest';

describe('blob cache scopes', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blobscope-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const data = Buffer.from('a private segment of project A');
  const digest = sha256Digest(data);

  it('project B does not get what project A downloaded, though it names the digest', async () => {
    const a = new BlobCache(dir, 'project:A');
    const b = new BlobCache(dir, 'project:B');
    await a.put(digest, data);
    assert.deepEqual(await a.get(digest), data);
    assert.equal(await b.get(digest), undefined);
    assert.equal(b.has(digest), false);
    assert.deepEqual(b.list(), []);
    assert.deepEqual(a.list(), [digest]);
    // The unscoped view (the CLI's, one user) sees the shared entry.
    assert.deepEqual(new BlobCache(dir).list(), [digest]);
  });

  it('once B downloaded the blob itself it is served from the cache, one copy on disk', async () => {
    const a = new BlobCache(dir, 'project:A');
    const b = new BlobCache(dir, 'project:B');
    await a.put(digest, data);
    await b.put(digest, data);
    assert.deepEqual(await b.get(digest), data);
    const ino = (p: string) => fs.statSync(p).ino;
    assert.equal(ino(a.pathOf(digest)), ino(b.pathOf(digest)), 'one inode for both projects');
    assert.equal(ino(new BlobCache(dir).pathOf(digest)), ino(a.pathOf(digest)));
    assert.equal(fs.statSync(a.pathOf(digest)).nlink, 3);
  });

  it('a damaged entry is dropped, and wrong bytes are never stored', async () => {
    const a = new BlobCache(dir, 'project:A');
    await a.put(digest, data);
    fs.rmSync(a.pathOf(digest));
    fs.writeFileSync(a.pathOf(digest), 'not the bytes');
    assert.equal(await a.get(digest), undefined);
    assert.equal(a.has(digest), false);
    await assert.rejects(a.put(digest, Buffer.from('other bytes')), /wrong digest/);
    assert.ok(fs.readdirSync(path.dirname(a.pathOf(digest))).every((n) => !n.endsWith('.tmp')), 'no temp file left');
  });

  it('a scope of any text stays a fixed-size folder name inside the cache', () => {
    for (const s of ['../../etc', '/abs', 'x'.repeat(10000), 'project:\u0000']) {
      const name = scopeDirName(s);
      assert.match(name, /^[0-9a-f]{32}$/);
      assert.ok(new BlobCache(dir, s).pathOf(digest).startsWith(path.join(dir, 'scopes', name) + path.sep));
    }
    assert.notEqual(scopeDirName('project:A'), scopeDirName('project:B'));
  });
});
