/**
 * `npm run bench -- resume [--runs N] [--only test|debian]`: time from "resume this base" to a guest
 * command answering, against a cold boot of the same disk (same VM config, fresh RAM) to the same
 * answer, measured in the same run, for both guests:
 *   test guest    busybox, Debian 6.1 kernel, 128 MiB   -> ratio_resume_vs_boot (target <= 0.2)
 *   Debian base   Debian 12, systemd, 1 GiB (the cached base of sandbox/guest/debian.ts)
 *                                                      -> ratio_resume_vs_boot_debian (goal <= 0.03)
 * Both go through the guest agent's first answer. Last line: one JSON object with every figure.
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

const argv = process.argv.slice(2);
const runs = Number(argv[argv.indexOf('--runs') + 1] || 3) || 3;
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const say = (s: string) => process.stderr.write(`${s}\n`);

async function coldBoot(home: string, baseId: string, i: number): Promise<number> {
  const base = new BaseStore(home).get(baseId);
  const dir = fs.mkdtempSync(path.join(home, 'tmp', `boot-${i}-`));
  const disk = path.join(dir, 'disk.qcow2');
  await run(qemuImgBinary(), ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4096,backing_file=${base.disk},backing_fmt=raw`, disk]);
  const ram = path.join(dir, 'ram.raw');
  fs.writeFileSync(ram, '');
  fs.truncateSync(ram, base.manifest.vm.ramBytes);
  const kernel = base.kernel ? { kernel: base.kernel, initrd: base.initrd! } : undefined;
  const files = vmFilesIn(dir, { path: disk, format: 'qcow2' }, ram, kernel);
  const binary = qemuBinary();
  const { accel } = await chooseAccel(binary);
  const t0 = performance.now();
  const vm = await startVm({ binary, name: `cloudlet-bench-boot-${i}`, cfg: base.manifest.vm, files, accel });
  const agent = new AgentClient(files.agentSocket);
  try {
    const r = await agent.exec('true', { timeoutMs: 900_000 });
    if (r.exitCode !== 0) throw new Error('guest command failed');
    return performance.now() - t0;
  } finally {
    agent.close();
    await stopVm(vm);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface GuestFigures {
  resume_ms: number; resume_runs_ms: number[]; resume_qemu_to_running_ms: number; resume_first_command_ms: number;
  boot_ms: number; boot_runs_ms: number[]; ratio: number;
}

async function measure(label: string, base: 'test' | 'debian'): Promise<GuestFigures> {
  const th = await tempHome({ base });
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
      const r = await th.manager.exec(s.id, 'true', { timeoutMs: 120_000 });
      const t2 = performance.now();
      if (r.exitCode !== 0) throw new Error('guest command failed after resume');
      resumeMs.push(t2 - t0);
      qemuToRunningMs.push(s.resumeMs ?? NaN);
      firstExecMs.push(t2 - t1);
      await th.manager.delete(s.id);
      say(`${label} resume run ${i + 1}: ${(t2 - t0).toFixed(0)} ms (QEMU start -> running ${s.resumeMs} ms, first command ${(t2 - t1).toFixed(0)} ms)`);
      const ms = await coldBoot(th.home, th.baseId, i);
      bootMs.push(ms);
      say(`${label} cold boot run ${i + 1}: ${ms.toFixed(0)} ms`);
    }
  } finally {
    await th.cleanup();
  }
  const resume = median(resumeMs), boot = median(bootMs);
  return {
    resume_ms: Math.round(resume), resume_runs_ms: resumeMs.map(Math.round), resume_qemu_to_running_ms: median(qemuToRunningMs),
    resume_first_command_ms: Math.round(median(firstExecMs)), boot_ms: Math.round(boot), boot_runs_ms: bootMs.map(Math.round),
    ratio: Number((resume / boot).toFixed(4)),
  };
}

async function main(): Promise<void> {
  fs.mkdirSync(os.tmpdir(), { recursive: true });
  const result: Record<string, unknown> = { bench: 'resume', accel: (await chooseAccel(qemuBinary())).accel, runs };
  if (!only || only === 'test') {
    const t = await measure('test guest', 'test');
    Object.assign(result, {
      guest: 'test guest (busybox, Debian 6.1 kernel, 128 MiB RAM, 64 MiB disk)',
      resume_ms: t.resume_ms, resume_runs_ms: t.resume_runs_ms, resume_qemu_to_running_ms: t.resume_qemu_to_running_ms,
      resume_first_command_ms: t.resume_first_command_ms, boot_ms: t.boot_ms, boot_runs_ms: t.boot_runs_ms,
      ratio_resume_vs_boot: t.ratio, target_ratio: 0.2,
    });
    process.stdout.write(`test guest: resume ${t.resume_ms} ms vs cold boot ${t.boot_ms} ms: ratio ${t.ratio}\n`);
  }
  if (!only || only === 'debian') {
    const d = await measure('Debian base', 'debian');
    Object.assign(result, {
      guest_debian: 'Debian 12 base (systemd, Debian 6.1 kernel, 1 GiB RAM, 4 GiB disk, agent as a systemd unit)',
      debian: { resume_ms: d.resume_ms, resume_runs_ms: d.resume_runs_ms, resume_qemu_to_running_ms: d.resume_qemu_to_running_ms,
        resume_first_command_ms: d.resume_first_command_ms, boot_ms: d.boot_ms, boot_runs_ms: d.boot_runs_ms },
      ratio_resume_vs_boot_debian: d.ratio, goal_ratio_debian: 0.03,
    });
    process.stdout.write(`Debian base: resume ${d.resume_ms} ms vs cold boot ${d.boot_ms} ms: ratio ${d.ratio}\n`);
  }
  result.host = { cpus: os.cpus().length, loadavg_1m: os.loadavg()[0] };
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((e) => { process.stderr.write(`bench resume failed: ${e instanceof Error ? e.stack : String(e)}\n`); process.exit(1); });
