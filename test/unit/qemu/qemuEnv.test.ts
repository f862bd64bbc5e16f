/**
 * QEMU is started with glibc's malloc on transparent huge pages (process.ts qemuEnv): fewer page
 * faults in its start-up. The caller's own GLIBC_TUNABLES are kept, and its own hugetlb choice wins.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { qemuEnv, startQemu } from '../../../sandbox/qemu/process';

describe('QEMU environment: malloc on huge pages', () => {
  it('adds glibc.malloc.hugetlb=1, keeps other tunables, leaves an explicit hugetlb alone', () => {
    assert.equal(qemuEnv({ PATH: '/bin' }).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1');
    assert.equal(qemuEnv({ PATH: '/bin' }).PATH, '/bin');
    assert.equal(qemuEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1');
    assert.equal(qemuEnv({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=0');
    assert.equal(qemuEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2');
  });

  it('the started process gets it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-qenv-'));
    try {
      const log = path.join(dir, 'qemu.log');
      const p = startQemu('/bin/sh', ['-c', 'echo "T=$GLIBC_TUNABLES"'], log);
      assert.equal(await p.exited, 0);
      assert.match(fs.readFileSync(log, 'utf8'), /^T=(.*:)?glibc\.malloc\.hugetlb=\d$/m);
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
});
