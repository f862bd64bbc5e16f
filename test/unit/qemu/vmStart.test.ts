/**
 * Starting a QEMU that exits at once (issue 11, item 8: an overlay asking for 4096 vCPUs): startVm
 * fails with QEMU's own words, and nothing keeps waiting for the QMP socket afterwards (the CLI
 * used to sit 60 s after printing the error, its QMP retry loop still running). Real QEMU: it
 * refuses the -smp value before it touches any file.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { qemuBinary } from '../../../sandbox/qemu/host';
import { startVm, vmFilesIn } from '../../../sandbox/qemu/vm';
import type { VmConfig } from '../../../sandbox/qemu/vmconfig';

describe('startVm: a QEMU that exits at start', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-vmstart-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('fails with QEMU\'s reason and stops trying to reach its QMP socket', async () => {
    const cfg: VmConfig = { machine: 'q35', cpuModel: 'qemu64', ramBytes: 64 << 20, vcpus: 4096, nic: { model: 'virtio-net-pci', mac: '52:54:00:12:34:56' } };
    const ram = path.join(dir, 'ram.raw');
    fs.writeFileSync(ram, '');
    fs.truncateSync(ram, cfg.ramBytes);
    fs.writeFileSync(path.join(dir, 'disk.raw'), Buffer.alloc(1 << 20));
    const files = vmFilesIn(dir, { path: path.join(dir, 'disk.raw'), format: 'raw' }, ram);
    let spawned = 0;
    await assert.rejects(
      startVm({ binary: qemuBinary(), name: 'cl-vmstart-test', cfg, files, accel: 'tcg', onSpawn: (p) => { spawned = p.pid; } }),
      (e: Error) => /exited at start/.test(e.message) && /4096/.test(e.message),
    );
    assert.ok(spawned > 0, 'onSpawn saw the pid before anything was awaited');
    // Whoever still retries the QMP socket would connect to this listener within its 50 ms retry interval.
    let connects = 0;
    const server = net.createServer((s) => { connects++; s.destroy(); });
    fs.rmSync(files.qmpSocket, { force: true }); // QEMU made it before refusing the -smp value
    await new Promise<void>((r) => server.listen(files.qmpSocket, () => r()));
    await new Promise((r) => setTimeout(r, 1000));
    await new Promise((r) => server.close(r));
    assert.equal(connects, 0, 'no QMP connection attempt after startVm failed');
  });
});
