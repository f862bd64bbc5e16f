/** CPU models of bases: named models with +feat/-feat flags, parsed so nothing else reaches QEMU's option parser. */
import { strict as assert } from 'assert';
import { isCloudletError } from '../../sandbox/common/errors';
import { checkHostCanRun, type HostQemu } from '../../sandbox/qemu/host';
import { buildQemuArgs, formatCpuModel, macFromSeed, parseCpuModel, type VmConfig } from '../../sandbox/qemu/vmconfig';

const host: HostQemu = {
  binary: '/usr/bin/qemu-system-x86_64', version: '7.2.0',
  cpuModels: new Set(['qemu64', 'Haswell-v4', 'host', 'max']),
  cpuFlags: new Set(['ssse3', 'sse4.1', 'sse4.2', 'avx2', 'svm', 'x2apic']),
  machines: new Map([['q35', 'pc-q35-7.2'], ['pc-q35-7.2', 'pc-q35-7.2']]),
};

describe('CPU models', () => {
  it('accepts a named model with +feat/-feat flags, as given', () => {
    assert.deepEqual(parseCpuModel('qemu64'), { model: 'qemu64', flags: [] });
    assert.deepEqual(parseCpuModel('qemu64,+ssse3'), { model: 'qemu64', flags: ['+ssse3'] });
    assert.deepEqual(parseCpuModel('Haswell-v4,-avx2,+sse4.2'), { model: 'Haswell-v4', flags: ['-avx2', '+sse4.2'] });
    assert.equal(formatCpuModel(parseCpuModel('qemu64,+ssse3,+ssse3')), 'qemu64,+ssse3');
  });

  it('refuses anything that is not a model name and +/- flags (properties, injection, contradictions)', () => {
    for (const bad of ['', 'qemu64,x=y', 'qemu64,ssse3', 'qemu64,+ssse3,mem-path=/etc/shadow', 'qemu64 -S', 'qemu64,+', 'qemu64,++x',
      'qemu64,+ssse3,-ssse3', ',+ssse3', 'qemu64,+SSE3 ', 'qemu64,,+ssse3', 'qemu64,+x\n-S', 42, undefined]) {
      assert.throws(() => parseCpuModel(bad), (e) => isCloudletError(e, 'BadInput'), JSON.stringify(bad));
    }
    const hint = (() => { try { parseCpuModel('qemu64,ssse3'); } catch (e) { return (e as { hint?: string }).hint; } return ''; })();
    assert.match(hint ?? '', /\+name to add/);
  });

  it('QEMU gets exactly the model and flags (-cpu qemu64,+ssse3)', () => {
    const cfg: VmConfig = { machine: 'pc-q35-7.2', cpuModel: 'qemu64,+ssse3,-svm', ramBytes: 128 << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: macFromSeed('t') } };
    const files = { disk: '/d', diskFormat: 'raw' as const, ramFile: '/r', qmpSocket: '/q', consoleSocket: '/c', consoleLog: '/l', agentSocket: '/a', migrateSocket: '/m', pidFile: '/p', qemuLog: '/ql' };
    const args = buildQemuArgs(cfg, files, { name: 'n', accel: 'tcg' });
    assert.equal(args[args.indexOf('-cpu') + 1], 'qemu64,+ssse3,-svm');
    assert.throws(() => buildQemuArgs({ ...cfg, cpuModel: 'qemu64,+ssse3,romfile=/etc/shadow' }, files, { name: 'n', accel: 'tcg' }), (e) => isCloudletError(e, 'BadInput'));
  });

  it('a host that lacks the model or a flag refuses it before QEMU starts, naming what is missing', () => {
    checkHostCanRun(host, { cpuModel: 'qemu64,+ssse3,-svm', machine: 'pc-q35-7.2' }, 'tcg', 'base t');
    assert.throws(() => checkHostCanRun(host, { cpuModel: 'EPYC-Genoa', machine: 'pc-q35-7.2' }, 'tcg', 'base t'),
      (e) => isCloudletError(e, 'Mismatch') && /EPYC-Genoa/.test(e.message));
    assert.throws(() => checkHostCanRun(host, { cpuModel: 'qemu64,+avx512f,+ssse3', machine: 'pc-q35-7.2' }, 'tcg', 'base t'),
      (e) => isCloudletError(e, 'Mismatch') && /avx512f/.test(e.message) && !/ssse3/.test(e.message));
    assert.throws(() => checkHostCanRun(host, { cpuModel: 'host', machine: 'pc-q35-7.2' }, 'tcg', 'base t'), (e) => isCloudletError(e, 'Mismatch') && /KVM/.test(e.message));
  });
});
