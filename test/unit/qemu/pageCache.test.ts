/**
 * A device-state load keeps the host page cache of the disk's files (drop-cache=off, vmconfig.ts
 * keepPageCache): QEMU's default wrote back and dropped the cache of the layer and of its backing
 * file when the incoming migration activated them, inside every launch (synthesis, resume,
 * handoff destination). Real QEMU, a tiny paused VM (no guest code runs): its state saved, then
 * loaded into a second QEMU on the same files; the base file's pages must still be cached after.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadDeviceState, saveDeviceStateToFile } from '../../../sandbox/qemu/deviceState';
import { qemuBinary, qemuImgBinary } from '../../../sandbox/qemu/host';
import { qcow2HasBacking, startVm, stopVm, vmFilesIn, type RunningVm } from '../../../sandbox/qemu/vm';
import { buildQemuArgs, type VmConfig } from '../../../sandbox/qemu/vmconfig';

/** Bytes of `file` in the host page cache (util-linux fincore), or undefined without fincore. */
function cachedBytes(file: string): number | undefined {
  try {
    return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
  } catch { return undefined; }
}

describe('QEMU disk files: the page cache survives a device-state load', function () {
  this.timeout(60_000);
  let dir: string;
  const vms: RunningVm[] = [];
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-pcache-')); });
  afterEach(async () => {
    for (const vm of vms.splice(0)) await stopVm(vm).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('drop-cache=off on the image, and on its backing file only when it has one', () => {
    const base = path.join(dir, 'base.raw');
    fs.writeFileSync(base, Buffer.alloc(1 << 20));
    execFileSync(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', '-o', `backing_file=${base},backing_fmt=raw`, path.join(dir, 'layer.qcow2')]);
    execFileSync(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', path.join(dir, 'alone.qcow2'), '1M']);
    assert.equal(qcow2HasBacking(path.join(dir, 'layer.qcow2')), true);
    assert.equal(qcow2HasBacking(path.join(dir, 'alone.qcow2')), false);
    assert.equal(qcow2HasBacking(base), false, 'a raw file is no qcow2');
    assert.equal(qcow2HasBacking(path.join(dir, 'missing.qcow2')), false);
    const cfg: VmConfig = { machine: 'q35', cpuModel: 'qemu64', ramBytes: 64 << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: '52:54:00:12:34:56' } };
    const drive = (a: string[]) => a[a.indexOf('-drive') + 1];
    const files = vmFilesIn(dir, { path: path.join(dir, 'layer.qcow2'), format: 'qcow2' }, path.join(dir, 'ram.raw'));
    assert.match(drive(buildQemuArgs(cfg, files, { name: 'n', accel: 'tcg', diskBacked: true })), /,file\.drop-cache=off,backing\.file\.drop-cache=off$/);
    assert.doesNotMatch(drive(buildQemuArgs(cfg, files, { name: 'n', accel: 'tcg' })), /backing\./);
    assert.match(drive(buildQemuArgs(cfg, { ...files, diskFormat: 'raw' }, { name: 'n', accel: 'tcg' })), /,file\.drop-cache=off$/);
  });

  for (const backed of [true, false]) {
    it(`QEMU takes the options and keeps the cache through the load (${backed ? 'a layer over a raw base' : 'a qcow2 without backing file'})`, async function () {
      const base = path.join(dir, 'base.raw');
      fs.writeFileSync(base, crypto.randomBytes(4 << 20));
      const disk = path.join(dir, 'disk.qcow2');
      execFileSync(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', ...(backed ? ['-o', `backing_file=${base},backing_fmt=raw`, disk] : [disk, '4M'])]);
      const cfg: VmConfig = { machine: 'q35', cpuModel: 'qemu64', ramBytes: 64 << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: '52:54:00:12:34:56' } };
      const ram = path.join(dir, 'ram.raw');
      fs.writeFileSync(ram, '');
      fs.truncateSync(ram, cfg.ramBytes);
      const files = vmFilesIn(dir, { path: disk, format: 'qcow2' }, ram);
      const state = path.join(dir, 'state.bin');
      const src = await startVm({ binary: qemuBinary(), name: 'cl-pcache-src', cfg, files, accel: 'tcg', paused: true });
      vms.push(src);
      await saveDeviceStateToFile(src.qmp, state, { socket: files.migrateSocket, timeoutMs: 30_000 });
      await stopVm(src);
      vms.length = 0;

      // The layer (its header and tables, just written) and, for a layer, the base it reads through.
      const watched = backed ? [disk, base] : [disk];
      for (const f of watched) fs.readFileSync(f); // in the page cache now
      const before = watched.map(cachedBytes);
      if (before.some((b) => b === undefined)) this.skip(); // no fincore on this host: the options were still taken above
      watched.forEach((f, i) => assert.ok(before[i]! >= fs.statSync(f).size / 2, `${path.basename(f)} cached before the load (${before[i]} bytes)`));
      const dst = await startVm({ binary: qemuBinary(), name: 'cl-pcache-dst', cfg, files, accel: 'tcg', incoming: true, paused: true });
      vms.push(dst);
      await loadDeviceState(dst.qmp, state, { socket: files.migrateSocket, timeoutMs: 30_000 });
      watched.forEach((f, i) => {
        const after = cachedBytes(f)!;
        assert.ok(after >= before[i]! * 0.9, `the load dropped the page cache of ${path.basename(f)}: ${before[i]} -> ${after} bytes`);
      });
    });
  }
});
