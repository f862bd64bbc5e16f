/**
 * The pure parts of issue 13's discards and of the dedup + xz peer: the guest's free-memory sum
 * (run under every awk a guest may have), the agent output parser, and the peer's chunk classes.
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatDiscard, freeMemoryKibScript, parseDiscardOption, parseZeroedKib, zeroFreeMemoryCommand } from '../../sandbox/overlay/discard';
import { DedupStreams } from '../../bench/lib/dedupXz';

const ZONEINFO = `Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 1
  pages free     3968
        boost    0
        min      44
        low      55
        high     66
        spanned  4095
Node 0, zone    DMA32
  pages free     180000
        boost    0
        min      3000
        low      3750
        high     4500
        spanned  258048
  pagesets
    cpu: 0
              count: 10
              high:  378
Node 0, zone   Normal
  pages free     1000
        min      100
        low      125
        high     150
`;

describe('discards (issue 13)', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'discard-'));
    fs.writeFileSync(path.join(dir, 'zoneinfo'), ZONEINFO);
    // busybox's own awk applet first in PATH (the test guest has no other awk)
    fs.mkdirSync(path.join(dir, 'bb'));
    const bb = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p))!;
    fs.symlinkSync(bb, path.join(dir, 'bb', 'awk'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const [name, sh] of [['busybox sh + awk', ['busybox', 'sh']], ['dash + system awk', ['dash']]] as const) {
    it(`free memory to take, ${name}: each zone but DMA above twice its high watermark, minus 8 MiB`, () => {
      const r = spawnSync(sh[0], [...sh.slice(1), '-c', freeMemoryKibScript(path.join(dir, 'zoneinfo'))], { encoding: 'utf8', env: { ...process.env, PATH: name.startsWith('busybox') ? `${dir}/bb:${process.env.PATH}` : process.env.PATH } });
      assert.equal(r.status, 0, r.stderr);
      // DMA32: 180000 - 2*4500 = 171000 pages; Normal: 1000 - 300 = 700 (the per-cpu "high:" line is not a watermark)
      assert.equal(Number(r.stdout.trim()), (171000 + 700) * 4 - 8192);
    });
  }

  it('never asks for a negative amount', () => {
    fs.writeFileSync(path.join(dir, 'tight'), 'Node 0, zone    DMA32\n  pages free     100\n        high     4500\n');
    const r = spawnSync('sh', ['-c', freeMemoryKibScript(path.join(dir, 'tight'))], { encoding: 'utf8' });
    assert.equal(r.stdout.trim(), '0');
  });

  it('lowers vm.min_free_kbytes to 4 MiB only while dd runs, never raises it, restores it on failure too', () => {
    const bin = path.join(dir, 'fakebin');
    fs.mkdirSync(bin, { recursive: true });
    // A dd that records the setting it ran under (and fails when asked to).
    fs.writeFileSync(path.join(bin, 'dd'), `#!/bin/sh\ncat "$MINFREE" >> "$DDLOG"\n[ -z "$DDFAIL" ]\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'zi'), 'Node 0, zone    DMA32\n  pages free     2100\n        high     10\n');
    const run = (old: string, fail = false, sh: readonly string[] = ['dash']) => {
      const minFree = path.join(dir, 'min_free'), log = path.join(dir, 'ddlog');
      fs.writeFileSync(minFree, `${old}\n`);
      fs.rmSync(log, { force: true });
      const r = spawnSync(sh[0], [...sh.slice(1), '-c', zeroFreeMemoryCommand(minFree, path.join(dir, 'zi'))], {
        encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, MINFREE: minFree, DDLOG: log, DDFAIL: fail ? '1' : '' },
      });
      // (busybox sh runs its own dd applet, not the recording one: no `during` there)
      return { status: r.status, out: r.stdout.trim(), during: fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim() : undefined, after: fs.readFileSync(minFree, 'utf8').trim() };
    };
    assert.deepEqual(run('45056'), { status: 0, out: '128', during: '4096', after: '45056' });
    assert.deepEqual(run('2048'), { status: 0, out: '128', during: '2048', after: '2048' });
    assert.deepEqual(run('45056', true), { status: 1, out: '', during: '4096', after: '45056' });
    assert.deepEqual(run('45056', false, ['busybox', 'sh']), { status: 0, out: '128', during: undefined, after: '45056' });
  });

  it('the guest command is plain POSIX sh (parses under dash -n) and its output is checked', () => {
    assert.equal(spawnSync('dash', ['-n', '-c', zeroFreeMemoryCommand()]).status, 0);
    assert.equal(parseZeroedKib('123456\n'), 123456);
    assert.throws(() => parseZeroedKib('dd: memory exhausted'), /unexpected guest output/);
    assert.throws(() => parseZeroedKib(''), /unexpected guest output/);
  });
});

describe('dedup + xz peer: chunk classes (issue 13)', () => {
  const chunk = (fill: number) => Buffer.alloc(4096, fill);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest();
  const list = (...bs: Buffer[]) => Buffer.concat(bs.map(sha));

  it('zero, base RAM, base disk, earlier and unique, with bytes kept only for unique chunks', () => {
    const d = new DedupStreams(list(chunk(1), chunk(2)), list(chunk(3), chunk(0)));
    assert.equal(d.unchanged('ram', 1, sha(chunk(2))), true);
    assert.equal(d.unchanged('ram', 1, sha(chunk(9))), false);
    assert.equal(d.unchanged('ram', 7, sha(chunk(2))), false); // past the base
    assert.equal(d.add('disk', 0, chunk(9)), 'unique');
    assert.equal(d.add('disk', 1, chunk(0)), 'zero');
    assert.equal(d.add('ram', 0, chunk(3)), 'baseDisk');
    assert.equal(d.add('ram', 1, chunk(1)), 'baseRam');
    assert.equal(d.add('ram', 5, chunk(9)), 'earlier'); // page cache of the disk chunk written above
    assert.equal(d.add('ram', 6, chunk(8)), 'unique');
    assert.deepEqual(d.counts, { zero: 1, baseRam: 1, baseDisk: 1, earlier: 1, unique: 2 });
    assert.ok(d.uniqueBytes().equals(Buffer.concat([chunk(9), chunk(8)])));
    assert.equal(d.recordBytes().length, 6 * 10);
    // a near-copy of a base chunk is still unique bytes (the peer has no delta encoding)
    const near = chunk(1); near[0] = 7;
    assert.equal(d.add('ram', 0, near), 'unique');
  });
});

describe('discard options and report (issue 13)', () => {
  it('--discard takes both, memory, disk or none', () => {
    assert.deepEqual(parseDiscardOption('both'), { memory: true, disk: true });
    assert.deepEqual(parseDiscardOption('memory'), { memory: true, disk: false });
    assert.deepEqual(parseDiscardOption('disk'), { memory: false, disk: true });
    assert.deepEqual(parseDiscardOption('none'), { memory: false, disk: false });
    assert.throws(() => parseDiscardOption('all'), /not one of both, memory, disk, none/);
    assert.equal(formatDiscard({ memoryZeroedBytes: 3 * 1048576, diskFreedBytes: 1048576, skipped: [], ms: 1 }), 'discards: freed memory left out 3.0 MiB, freed disk blocks left out 1.0 MiB');
    assert.equal(formatDiscard({ skipped: ['disk: fstrim failed (not supported)'], ms: 1 }), 'discards: skipped disk: fstrim failed (not supported)');
  });
});
