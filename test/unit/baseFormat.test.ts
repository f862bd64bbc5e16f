/** Base bundle formats without QEMU: digest lists, base ID, the export archive, manifest checks, QEMU args. */
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CHUNK, firstDifferentChunk, hashFile } from '../../sandbox/base/digests';
import { computeBaseId, parseManifest, BASE_FORMAT, BASE_FORMAT_VERSION, type BaseManifest } from '../../sandbox/base/manifest';
import { extractMember, readTarIndex, writeTar } from '../../sandbox/base/tarFile';
import { buildQemuArgs, macFromSeed, type VmConfig } from '../../sandbox/qemu/vmconfig';
import { isCloudletError } from '../../sandbox/common/errors';

describe('base bundle formats', () => {
  let tmp: string;
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'basefmt-')); });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('digest list: 32-byte SHA-256 per 4 KiB chunk, last partial chunk unpadded', async () => {
    const data = crypto.randomBytes(3 * CHUNK + 100);
    const f = path.join(tmp, 'x');
    fs.writeFileSync(f, data);
    const d = await hashFile(f, { chunks: true });
    assert.equal(d.chunks.length, 4 * 32);
    for (let i = 0; i < 4; i++) {
      const want = crypto.createHash('sha256').update(data.subarray(i * CHUNK, Math.min((i + 1) * CHUNK, data.length))).digest();
      assert.deepEqual(d.chunks.subarray(i * 32, i * 32 + 32), want);
    }
    assert.equal(d.sha256, crypto.createHash('sha256').update(data).digest('hex'));
    const other = Buffer.from(d.chunks); other[2 * 32 + 5] ^= 1;
    assert.equal(firstDifferentChunk(d.chunks, other), 2);
    assert.equal(firstDifferentChunk(d.chunks, d.chunks), -1);
  });

  it('base ID is the documented SHA-256 over the two digest-list hashes', () => {
    const a = 'a'.repeat(64); const b = 'b'.repeat(64);
    assert.equal(computeBaseId(a, b), crypto.createHash('sha256').update(`cloudlet-base-id/1\ndisk ${a}\nram ${b}\n`).digest('hex'));
    assert.notEqual(computeBaseId(a, b), computeBaseId(b, a));
  });

  it('export archive round-trips, is a tar that lists manifest first, and keeps zero blocks sparse', async () => {
    const m = path.join(tmp, 'manifest.json'); fs.writeFileSync(m, '{"x":1}');
    const big = path.join(tmp, 'disk.raw');
    fs.writeFileSync(big, Buffer.concat([crypto.randomBytes(5000), Buffer.alloc(1 << 20), crypto.randomBytes(777)]));
    const out = path.join(tmp, 'b.tar');
    await writeTar(out, [{ name: 'manifest.json', path: m }, { name: 'disk.raw', path: big }]);
    const idx = await readTarIndex(out);
    assert.deepEqual(idx.map((e) => e.name), ['manifest.json', 'disk.raw']);
    await extractMember(out, idx[1], path.join(tmp, 'back'));
    assert.deepEqual(fs.readFileSync(path.join(tmp, 'back')), fs.readFileSync(big));
    assert.ok(fs.statSync(path.join(tmp, 'back')).blocks * 512 < 600 * 1024, 'zero blocks become holes');
    fs.truncateSync(out, fs.statSync(out).size - 2000);
    await assert.rejects(readTarIndex(out), (e) => isCloudletError(e, 'Corrupt') && /truncated/.test(e.message));
  });

  it('manifest: refuses a base ID that does not match the digests and an unknown format version', () => {
    const e = { bytes: 1, sha256: 'c'.repeat(64) };
    const m: BaseManifest = {
      format: BASE_FORMAT, formatVersion: BASE_FORMAT_VERSION, baseId: computeBaseId('d'.repeat(64), 'e'.repeat(64)), name: 'x',
      createdAt: '', vm: { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: 4096, vcpus: 1, nic: { model: 'virtio-net-pci', mac: '52:54:00:00:00:01' } },
      qemu: { version: '7.2.0', accel: 'tcg' }, chunkSize: 4096, ports: [], readiness: { agent: true, timeoutMs: 1 },
      files: { 'disk.raw': e, 'ram.raw': { bytes: 4096, sha256: e.sha256 }, 'state.bin': e, 'disk.digests': { bytes: 32, sha256: 'd'.repeat(64) }, 'ram.digests': { bytes: 32, sha256: 'e'.repeat(64) } },
    };
    assert.equal(parseManifest(JSON.stringify(m), 't').baseId, m.baseId);
    assert.throws(() => parseManifest(JSON.stringify({ ...m, baseId: 'f'.repeat(64) }), 't'), /does not match its digests/);
    assert.throws(() => parseManifest(JSON.stringify({ ...m, formatVersion: 99 }), 't'), /version 99 is not supported/);
  });

  it('QEMU arguments: same device set for boot and resume, only -incoming/-S added', () => {
    const cfg: VmConfig = { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: 128 << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: macFromSeed('t') } };
    const files = { disk: '/d', diskFormat: 'raw' as const, ramFile: '/r', qmpSocket: '/q', consoleSocket: '/c', consoleLog: '/l', agentSocket: '/a', migrateSocket: '/m', pidFile: '/p', qemuLog: '/g' };
    const boot = buildQemuArgs(cfg, files, { name: 'n', accel: 'tcg' });
    const resume = buildQemuArgs(cfg, files, { name: 'n', accel: 'tcg', incoming: true, paused: true, ports: [{ guest: 80, host: 8080 }] });
    const devices = (a: string[]) => a.filter((_, i) => a[i - 1] === '-device');
    assert.deepEqual(devices(boot), devices(resume));
    assert.ok(resume.includes('-incoming') && resume.includes('-S'));
    assert.ok(resume.some((a) => a.includes('hostfwd=tcp:127.0.0.1:8080-:80')));
    assert.ok(boot.some((a) => a.includes('share=on')));
    assert.match(macFromSeed('t'), /^52:54:00(:[0-9a-f]{2}){3}$/);
  });

  it('QEMU arguments: refuses VM config values that would inject options (comma, =)', () => {
    const cfg: VmConfig = { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: 128 << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: macFromSeed('t') } };
    const files = { disk: '/d', diskFormat: 'raw' as const, ramFile: '/r', qmpSocket: '/q', consoleSocket: '/c', consoleLog: '/l', agentSocket: '/a', migrateSocket: '/m', pidFile: '/p', qemuLog: '/g' };
    const bad: VmConfig[] = [
      { ...cfg, nic: { ...cfg.nic, mac: '52:54:00:12:34:56,romfile=/etc/shadow' } },
      { ...cfg, nic: { ...cfg.nic, model: 'virtio-net-pci,romfile=/etc/shadow' as 'virtio-net-pci' } },
      { ...cfg, cpuModel: 'qemu64,x=y' },
      { ...cfg, machine: 'pc,accel=kvm' },
      { ...cfg, vcpus: '1,maxcpus=64' as unknown as number },
    ];
    for (const c of bad) assert.throws(() => buildQemuArgs(c, files, { name: 'n', accel: 'tcg' }), (e: Error) => e.name === 'CloudletError');
    assert.ok(buildQemuArgs(cfg, files, { name: 'n', accel: 'tcg' }).length > 0);
  });
});
