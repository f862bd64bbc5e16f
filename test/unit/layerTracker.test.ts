/**
 * The handoff's disk-layer tracker (sandbox/handoff/layerTracker.ts) on real qcow2 layers written by
 * qemu-io: it finds exactly the chunks that differ from the base (or from what it sent), in runs or
 * chunk by chunk, skips an unchanged file without reading it, and never skips after a write.
 */
import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import { LayerTracker } from '../../sandbox/handoff/layerTracker';
import { Qcow2Reader } from '../../sandbox/overlay/qcow2Reader';
import { NbdBitmapClient } from '../../sandbox/qemu/nbdClient';

const has = (bin: string) => { try { execFileSync(bin, ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('handoff disk-layer tracker (qcow2 written by qemu-io)', function () {
  this.timeout(60_000);
  let dir: string;
  before(function () { if (!has('qemu-img') || !has('qemu-io')) this.skip(); });
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layer-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const setup = (clusterSize: number) => {
    const base = path.join(dir, 'base.raw');
    const b = Buffer.alloc(4 << 20);
    for (let i = 0; i < b.length; i += 4096) b.fill(i / 4096 % 251, i, i + 4096);
    fs.writeFileSync(base, b);
    const layer = path.join(dir, 'layer.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${clusterSize},backing_file=${base},backing_fmt=raw`, layer]);
    const io = (...cmds: string[]) => execFileSync('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), layer], { stdio: 'ignore' });
    return { base, layer, io };
  };

  for (const clusterSize of [4096, 65536, 512]) {
    it(`cluster size ${clusterSize}: exactly the chunks that differ, then only what changed since; an untouched file is not read`, async () => {
      const { base, layer, io } = setup(clusterSize);
      // Chunk 3: new data; 10-12: new data (one run); 20: zeroes; 30: rewritten with the base's own bytes (no change).
      io('write -P 0xab 12k 4k', 'write -P 0xcd 40k 12k', 'write -z 80k 4k', `write -P ${30 % 251} 120k 4k`);
      const fd = fs.openSync(base, 'r');
      try {
        const t = new LayerTracker(layer, fd);
        const scan = async () => { const seen: number[] = []; const n = await t.scan(async (i, data, digest) => { seen.push(i); assert.equal(data.length, 4096); assert.equal(digest.length, 32); }, true); assert.equal(n, seen.length); return seen; };
        await sleep(120);
        assert.deepEqual(await scan(), [3, 10, 11, 12, 20]);
        assert.equal(t.lastSkipped, false);
        assert.deepEqual(await scan(), [], 'nothing new');
        assert.equal(t.lastSkipped, true, 'the unchanged file was not read');
        io('write -P 0xab 12k 4k'); // the same bytes again: read, but nothing to send
        assert.deepEqual(await scan(), []);
        assert.equal(t.lastSkipped, false);
        io('write -P 0x11 12k 4k', 'write -P 0x22 200k 4k'); // at once after a scan: found, whatever the timestamps
        assert.deepEqual(await scan(), [3, 50]);
        io(`write -P ${3 % 251} 12k 4k`); // back to the base's bytes: the destination holds 0x11, so it goes again
        assert.deepEqual(await scan(), [3]);
      } finally { fs.closeSync(fd); }
    });
  }

  it('with the base\'s digests, zero clusters (discarded blocks) are decided without reading the base: the same chunks as reading it, and the digests are what is used', async () => {
    const { base, layer, io } = setup(4096);
    // Zero clusters over base chunks 20 (data) and 251 (zeros: 251 % 251), a run 40-47 (data), and 60 which was sent as data before.
    io('write -z 80k 4k', `write -z ${251 * 4}k 4k`, 'write -z 160k 32k', 'write -P 0x77 240k 4k');
    const b = fs.readFileSync(base);
    const digests = Buffer.concat(Array.from({ length: b.length / 4096 }, (_, i) => createHash('sha256').update(b.subarray(i * 4096, (i + 1) * 4096)).digest()));
    const fd = fs.openSync(base, 'r');
    try {
      const scan = async (t: LayerTracker) => { const seen: number[] = []; await t.scan(async (i) => { seen.push(i); }, true); return seen; };
      const expected = [20, 40, 41, 42, 43, 44, 45, 46, 47, 60];
      assert.deepEqual(await scan(new LayerTracker(layer, fd)), expected, 'reading the base');
      const t = new LayerTracker(layer, fd, digests);
      assert.deepEqual(await scan(t), expected, 'with the digests');
      // Chunk 60 held as 0x77 (sent), then discarded: a zero cluster over a chunk the destination holds as data.
      io('write -z 240k 4k');
      await sleep(120);
      assert.deepEqual(await scan(t), [60]);
      const held = t.held(60, Buffer.alloc(4096));
      assert.ok(held.every((x) => x === 0), 'recorded as sent: zeros');
      // The digests decide, not the base's bytes: digests that say chunk 20 is zero make it unchanged.
      const lying = Buffer.from(digests);
      createHash('sha256').update(Buffer.alloc(4096)).digest().copy(lying, 20 * 32);
      assert.deepEqual(await scan(new LayerTracker(layer, fd, lying)), [40, 41, 42, 43, 44, 45, 46, 47, 60]);
      // hold(): what a round sent without a scan (the launch round) counts as held.
      const h = new LayerTracker(layer, fd, digests);
      h.hold(20, Buffer.alloc(4096));
      assert.deepEqual(await scan(h), [40, 41, 42, 43, 44, 45, 46, 47, 60]);
    } finally { fs.closeSync(fd); }
  });

  it('scanChunks loads only the L2 tables of the chunks asked for (512-byte clusters: one table per 32 KiB): same bytes as the whole mapping, other chunks refused', async () => {
    const { base, layer, io } = setup(512);
    io('write -P 0xab 12k 4k', 'write -P 0xcd 1m 8k', 'write -z 2m 4k', 'write -P 0x5a 3m 2k');
    const whole = Qcow2Reader.open(layer);
    const part = Qcow2Reader.open(layer, { chunks: [3, 256, 257, 512, 768] });
    const fd = fs.openSync(base, 'r');
    try {
      for (const c of [3, 256, 257, 512, 768]) assert.deepEqual(part.readChunk(c, undefined, fd), whole.readChunk(c, undefined, fd), `chunk ${c}`);
      assert.equal(part.readChunk(768, undefined, fd)[2047], 0x5a);
      assert.equal(part.readChunk(768, undefined, fd)[2048], 768 % 251, 'the rest of a partly written chunk comes from the base');
      assert.throws(() => part.readChunk(100, undefined, fd), /outside the L2 tables loaded/);
      const t = new LayerTracker(layer, fd);
      const seen: number[] = [];
      assert.equal(await t.scanChunks([3, 100, 256, 257, 512, 768], async (i) => { seen.push(i); }), 5);
      assert.deepEqual(seen, [3, 256, 257, 512, 768]);
    } finally { fs.closeSync(fd); whole.close(); part.close(); }
  });

  for (const clusterSize of [4096, 65536, 512]) {
    it(`cluster size ${clusterSize}: remappedChunks finds the clusters whose mapping changed since the last complete scan (a write QEMU had not flushed to the L2 table then), not data rewritten in place`, async () => {
      const { base, layer, io } = setup(clusterSize);
      io('write -P 0xab 12k 4k', 'write -z 80k 4k');
      const fd = fs.openSync(base, 'r');
      try {
        const t = new LayerTracker(layer, fd);
        const chunksOf = (from: number, bytes: number) => { const c: number[] = []; const cs = Math.max(clusterSize, 4096); for (let o = Math.floor(from / cs) * cs; o < Math.ceil((from + bytes) / cs) * cs; o += 4096) c.push(o / 4096); return c; };
        assert.deepEqual(t.remappedChunks(), [...chunksOf(12 << 10, 4096), ...chunksOf(80 << 10, 4096)], 'before any scan: all the layer maps');
        await t.scan(async () => undefined, true);
        assert.deepEqual(t.remappedChunks(), [], 'nothing changed since the scan');
        // After the scan: a cluster allocated (new mapping), a data chunk zeroed, a zero chunk written.
        io('write -P 0x77 400k 4k', 'write -z 12k 4k', 'write -P 0x01 80k 4k');
        // With 64 KiB clusters both 4 KiB writes land inside data clusters: no entry changes, only data.
        // With small clusters the zero write sets zero flags and the write over the zero cluster maps data.
        const expected = [...(clusterSize > 4096 ? [] : [...chunksOf(12 << 10, 4096), ...chunksOf(80 << 10, 4096)]), ...chunksOf(400 << 10, 4096)];
        const got = t.remappedChunks();
        assert.deepEqual(got, expected);
      } finally { fs.closeSync(fd); }
    });
  }

  it('hold() of zero chunks (a launch round of zero records) keeps no 4 KiB copies, and held() still answers zeros', async () => {
    const { base, layer } = setup(4096);
    const digests = Buffer.alloc((4 << 20) / 4096 * 32);
    const zeroDigest = createHash('sha256').update(Buffer.alloc(4096)).digest();
    const baseBytes = fs.readFileSync(base);
    for (let i = 0; i < 1024; i++) createHash('sha256').update(baseBytes.subarray(i * 4096, i * 4096 + 4096)).digest().copy(digests, i * 32);
    zeroDigest.copy(digests, 5 * 32); // pretend base chunk 5 is zero (a digest-only decision)
    const fd = fs.openSync(base, 'r');
    try {
      const t = new LayerTracker(layer, fd, digests);
      const zero = Buffer.alloc(4096);
      const noDigests = new LayerTracker(layer, fd);
      const before = process.memoryUsage().arrayBuffers;
      for (let k = 0; k < 50_000; k++) noDigests.hold(k, zero); // 200 MB held if each were copied
      assert.ok(process.memoryUsage().arrayBuffers - before < 20 << 20, `held memory grew by ${process.memoryUsage().arrayBuffers - before} bytes`);
      assert.ok(noDigests.held(49_999, Buffer.alloc(4096)).equals(zero));
      t.hold(7, zero);
      assert.ok(t.held(7, Buffer.alloc(4096)).equals(zero), 'a zeroed chunk over a non-zero base reads as zeros');
      t.hold(7, Buffer.alloc(4096, 9));
      assert.equal(t.held(7, Buffer.alloc(4096))[0], 9, 'non-zero bytes are kept');
      t.hold(5, zero);
      assert.ok(t.held(5, Buffer.alloc(4096)).equals(baseBytes.subarray(5 * 4096, 6 * 4096)), 'zero over a zero base: nothing held, the base answers');
    } finally { fs.closeSync(fd); }
  });

  it('written chunks from a QEMU dirty bitmap over NBD (qemu-nbd), then only those compared: exactly the ones that differ', async function () {
    if (!has('qemu-nbd')) this.skip();
    const { base, layer, io } = setup(65536);
    io('write -P 0xab 12k 4k'); // before the bitmap: found by the first whole scan
    execFileSync('qemu-img', ['bitmap', '--add', '-g', '4096', '-f', 'qcow2', layer, 'ho']);
    const fd = fs.openSync(base, 'r');
    try {
      const t = new LayerTracker(layer, fd);
      const seen: number[] = [];
      const visit = async (i: number) => { seen.push(i); };
      await sleep(120);
      assert.equal(await t.scan(visit, true), 1);
      // After the bitmap: new data (chunk 10), the same bytes again (3: nothing to send), the base's
      // own bytes (30: nothing), zeroes (20).
      io('write -P 0xcd 40k 4k', 'write -P 0xab 12k 4k', `write -P ${30 % 251} 120k 4k`, 'write -z 80k 4k');
      const sock = path.join(dir, 'nbd.sock');
      const nbd = spawn('qemu-nbd', ['-r', '-B', 'ho', '-k', sock, '-x', 'disk', '-f', 'qcow2', layer], { stdio: 'ignore' });
      try {
        for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await sleep(50);
        const c = await NbdBitmapClient.connect(sock, 'disk', 'ho');
        const ext = await c.dirtyExtents();
        c.close();
        assert.deepEqual(ext, [{ offset: 12 << 10, length: 4096 }, { offset: 40 << 10, length: 4096 }, { offset: 80 << 10, length: 4096 }, { offset: 120 << 10, length: 4096 }]);
        seen.length = 0;
        const chunks = ext.map((e) => e.offset / 4096);
        assert.equal(await t.scanChunks(chunks, visit), 2);
        assert.deepEqual(seen, [10, 20]);
        await assert.rejects(NbdBitmapClient.connect(sock + '.none', 'disk', 'ho'), /NBD/);
      } finally { nbd.kill(); }
    } finally { fs.closeSync(fd); }
  });
});
