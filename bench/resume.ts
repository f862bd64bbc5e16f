/**
 * `npm run bench -- resume [--runs N]`: time from "resume this base" to a guest command answering,
 * against a cold boot of the same disk (same VM config, fresh RAM) measured in the same run.
 * Both go through the guest agent's first answer. Last line: one JSON object with every figure and
 * ratio_resume_vs_boot (target <= 0.2; the project goal is 0.03).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BaseStore } from '../sandbox/base/store';
import { AgentClient } from '../sandbox/qemu/agentClient';
import { chooseAccel } from '../sandbox/qemu/accel';
import { qemuBinary, qemuImgBinary } from '../sandbox/qemu/host';
import { run } from '../sandbox/qemu/run';
import { startVm, stopVm, vmFilesIn } from '../sandbox/qemu/vm';
import { tempHome } from '../test/integration/fixtures/testBase';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 3) || 3;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function coldBoot(home: string, baseId: string, i: number): Promise<number> {
  const base = new BaseStore(home).get(baseId);
  const dir = fs.mkdtempSync(path.join(home, 'tmp', `boot-${i}-`));
  const disk = path.join(dir, 'disk.qcow2');
  await run(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4096,backing_file=${base.disk},backing_fmt=raw`, disk]);
  const ram = path.join(dir, 'ram.raw');
  fs.writeFileSync(ram, '');
  fs.truncateSync(ram, base.manifest.vm.ramBytes);
  const files = vmFilesIn(dir, { path: disk, format: 'qcow2' }, ram, { kernel: base.kernel!, initrd: base.initrd! });
  const binary = qemuBinary();
  const { accel } = await chooseAccel(binary);
  const t0 = performance.now();
  const vm = await startVm({ binary, name: `cloudlet-bench-boot-${i}`, cfg: base.manifest.vm, files, accel });
  const agent = new AgentClient(files.agentSocket);
  try {
    const r = await agent.exec('true', { timeoutMs: 300_000 });
    if (r.exitCode !== 0) throw new Error('guest command failed');
    return performance.now() - t0;
  } finally {
    agent.close();
    await stopVm(vm);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(path.join(os.tmpdir()), { recursive: true });
  const th = await tempHome();
  const resumeMs: number[] = [];
  const qemuToRunningMs: number[] = [];
  const firstExecMs: number[] = [];
  const bootMs: number[] = [];
  try {
    fs.mkdirSync(path.join(th.home, 'tmp'), { recursive: true });
    await th.manager.bases.verifyQuick(th.baseId); // not part of the figure: done once per base
    await chooseAccel(qemuBinary()); // nor the KVM probe: once per host boot
    // Interleaved (resume, boot, resume, boot ...) so both see the same load on a shared machine.
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const s = await th.manager.resume(th.baseId, { name: `bench-${i}` });
      const t1 = performance.now();
      const r = await th.manager.exec(s.id, 'true', { timeoutMs: 60_000 });
      const t2 = performance.now();
      if (r.exitCode !== 0) throw new Error('guest command failed after resume');
      resumeMs.push(t2 - t0);
      qemuToRunningMs.push(s.resumeMs ?? NaN);
      firstExecMs.push(t2 - t1);
      await th.manager.delete(s.id);
      process.stderr.write(`resume run ${i + 1}: ${(t2 - t0).toFixed(0)} ms (QEMU start -> running ${s.resumeMs} ms, first command ${(t2 - t1).toFixed(0)} ms)\n`);
      const ms = await coldBoot(th.home, th.baseId, i);
      bootMs.push(ms);
      process.stderr.write(`cold boot run ${i + 1}: ${ms.toFixed(0)} ms\n`);
    }
  } finally {
    await th.cleanup();
  }
  const accel = await chooseAccel(qemuBinary());
  const base = { resume_ms: median(resumeMs), boot_ms: median(bootMs) };
  const result = {
    bench: 'resume',
    guest: 'test guest (busybox, Debian 6.1 kernel, 128 MiB RAM, 64 MiB disk)',
    accel: accel.accel,
    runs,
    resume_ms: Math.round(base.resume_ms),
    resume_runs_ms: resumeMs.map(Math.round),
    resume_qemu_to_running_ms: median(qemuToRunningMs),
    resume_first_command_ms: Math.round(median(firstExecMs)),
    boot_ms: Math.round(base.boot_ms),
    boot_runs_ms: bootMs.map(Math.round),
    ratio_resume_vs_boot: Number((base.resume_ms / base.boot_ms).toFixed(4)),
    target_ratio: 0.2,
    host: { cpus: os.cpus().length, loadavg_1m: os.loadavg()[0] },
  };
  process.stdout.write(`resume ${result.resume_ms} ms vs cold boot ${result.boot_ms} ms: ratio ${result.ratio_resume_vs_boot}\n`);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { process.stderr.write(`bench resume failed: ${e instanceof Error ? e.stack : String(e)}\n`); process.exit(1); });
