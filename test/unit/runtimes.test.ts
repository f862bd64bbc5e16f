/**
 * The Node versions the project declares are the ones it tests (scripts/node-runtimes.sh runs this
 * suite under each besides the system Node), and what differed between them stays fixed.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { SegmentCompressor } from '../../sandbox/overlay';
import Database, { sqliteDriver, sqliteDriverFor } from '../../sandbox/common/sqlite';

const root = path.join(__dirname, '../..');

describe('Node runtimes: declared and tested alike', () => {
  it('package.json engines.node names exactly Node 20 and the majors the unit suite also runs under', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    const tested = execFileSync('bash', [path.join(root, 'scripts/node-runtimes.sh'), 'majors'], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
    const declared = pkg.engines.node.split('||').map((r) => /^\s*\^(\d+)(\.\d+){0,2}\s*$/.exec(r)?.[1]).map(Number);
    assert.ok(declared.every((m) => m > 0), `every range of engines.node is ^MAJOR[.MINOR.PATCH]: ${pkg.engines.node}`);
    assert.deepEqual(declared, [20, ...tested]);
    assert.ok(tested.includes(22) && tested.includes(24), `tested majors: ${tested.join(' ')}`);
  });

  it('the running Node is one engines.node declares', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    const [major, minor, patch] = process.versions.node.split('.').map(Number);
    const ok = pkg.engines.node.split('||').some((r) => {
      const [M, m = 0, p = 0] = r.trim().slice(1).split('.').map(Number);
      return major === M && (minor > m || (minor === m && patch >= p));
    });
    assert.ok(ok, `Node ${process.version} is outside engines.node ${pkg.engines.node}`);
  });

  // Node 22+ refuses to transfer Node's shared Buffer pool, of which a small zstd result is a slice.
  it('segment compressor: results of every size come back from the worker, small ones included', async () => {
    const c = new SegmentCompressor(1);
    try {
      for (const input of [Buffer.from('x'), Buffer.alloc(4096, 7), Buffer.alloc(1 << 20, 1), Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) & 255))]) {
        const z = await c.compress(input, 3);
        assert.ok(z.data.length > 0 && z.digest.startsWith('sha256:'));
        assert.deepEqual(await c.decompress(z.data), input);
      }
    } finally {
      await c.close();
    }
  });

  it('SQLite: better-sqlite3 12 on Node 20, the Node-API build (13) from Node 22 on, and it works here', () => {
    assert.equal(sqliteDriverFor(20), 'better-sqlite3');
    assert.equal(sqliteDriverFor(22), 'better-sqlite3-napi');
    assert.equal(sqliteDriverFor(24), 'better-sqlite3-napi');
    const major = Number(process.versions.node.split('.')[0]);
    assert.equal(sqliteDriver, sqliteDriverFor(major));
    const version = (JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve(`${sqliteDriver}/package.json`)), 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(version.split('.')[0], major >= 22 ? '13' : '12', `${sqliteDriver} ${version} under Node ${process.version}`);
    const db = new Database(':memory:');
    try {
      db.exec('CREATE TABLE t (a INTEGER)');
      const insert = db.prepare('INSERT INTO t VALUES (?)');
      db.transaction(() => { for (let i = 0; i < 1000; i++) insert.run(i); })();
      // Many short-lived statements, left to the garbage collector as the stores leave theirs.
      for (let i = 0; i < 2000; i++) assert.equal((db.prepare('SELECT count(*) AS n FROM t WHERE a >= ?').get(i % 1000) as { n: number }).n, 1000 - (i % 1000));
    } finally {
      db.close();
    }
  });
});
