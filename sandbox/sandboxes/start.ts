/**
 * The one VM-start path of sandboxes (resume, restart, synthesis launch, handoff destination):
 * QEMU paused with -incoming defer, its pid in the record before anything can crash, the guest
 * agent attached; then the device state loaded, `cont`, and the record marked running.
 */
import type { Socket } from 'net';
import { CloudletError } from '../common/errors';
import { AgentClient } from '../qemu/agentClient';
import { loadDeviceState } from '../qemu/deviceState';
import { qemuBinary } from '../qemu/host';
import type { QmpClient } from '../qemu/qmp';
import { logTail, startVm, type RunningVm } from '../qemu/vm';
import { qemuNameOf, vmFilesOf, type SandboxFiles } from './layout';
import type { LiveVms } from './liveVms';
import { writeRecord, type SandboxRecord } from './record';
import { failpoint, failpointSet } from '../common/failpoint';

/**
 * Starts the sandbox's QEMU, paused, waiting for a device state; the agent is attached.
 * `autostart`: no -S: QEMU starts the CPUs by itself once a state saved from a running VM loaded
 * (a state saved paused stays paused; `cont` is sent either way).
 */
export async function startSandboxQemu(live: LiveVms, rec: SandboxRecord, files: SandboxFiles, o: { autostart?: boolean } = {}): Promise<RunningVm> {
  const vm = await startVm({
    binary: qemuBinary(), name: qemuNameOf(rec.id), cfg: rec.vmConfig, files: vmFilesOf(files, rec.kernel),
    accel: rec.accel, incoming: true, paused: !o.autostart, ports: rec.ports,
    // Recorded at spawn, not after QMP answers: a crash in between must not leave an untracked QEMU.
    onSpawn: (p) => {
      // Test hook 'qemu-spawned': the crash window between QEMU's spawn and its pid in the record.
      if (p.pid > 0 && !failpointSet('qemu-spawned')) { rec.pid = p.pid; rec.cmdline = p.cmdline; writeRecord(files.dir, rec); }
    },
  });
  await failpoint('qemu-spawned', ` qemu=${vm.pid}`);
  const agent = new AgentClient(files.agentSocket);
  live.set(rec.id, { qmp: vm.qmp, agent });
  await agent.attach();
  return vm;
}

/**
 * Loads the device state into the waiting QEMU, continues the VM and marks the record running.
 * `listening`: the QEMU already waits on its migration socket (listenForDeviceState); `since`:
 * when QEMU was started (the record's resumeMs counts from there); `ramReady`: the RAM file's copy
 * still running (prepareFiles ramInBackground), awaited before the state loads.
 */
export async function runFromState(rec: SandboxRecord, files: SandboxFiles, qmp: QmpClient, state: string | Buffer,
  o: { timeoutMs: number; listening?: boolean; connected?: Socket; exited?: Promise<unknown>; since?: number; ramReady?: Promise<void> }): Promise<SandboxRecord> {
  const t0 = o.since ?? Date.now();
  try {
    await o.ramReady; // the RAM copy made while QEMU started (device state loads read guest RAM)
    try {
      await loadDeviceState(qmp, state, { socket: files.migrateSocket, timeoutMs: o.timeoutMs, listening: o.listening, connected: o.connected });
    } catch (e) {
      // QEMU exits when an incoming state does not load: wait for its last words in the log.
      if (o.exited && e instanceof CloudletError && e.code === 'Corrupt') await Promise.race([o.exited.catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
      throw e;
    }
    await qmp.execute('cont');
  } catch (e) {
    const tail = logTail(files.qemuLog);
    throw e instanceof CloudletError && tail ? new CloudletError(e.code, `${e.message}\n${tail}`, { hint: e.hint }) : e;
  }
  const running: SandboxRecord = { ...rec, status: 'running', resumedAt: new Date().toISOString(), resumeMs: Date.now() - t0 };
  writeRecord(files.dir, running);
  return running;
}

