/**
 * The connections this process holds to running sandboxes (QMP takes one client; the agent port
 * one reader) and the one way a sandbox's QEMU is ended.
 */
import { AgentClient } from '../qemu/agentClient';
import { processState } from '../qemu/process';
import { QmpClient } from '../qemu/qmp';
import { stopVm } from '../qemu/vm';
import type { SandboxFiles } from './layout';
import { readRecord } from './record';

interface Live { qmp?: QmpClient; agent?: AgentClient }

export class LiveVms {
  private readonly live = new Map<string, Live>();

  set(id: string, l: Live): void { this.live.set(id, { ...this.live.get(id), ...l }); }

  has(id: string): boolean { return this.live.has(id); }

  /** The open QMP connection of a sandbox started or adopted here, if any. */
  openQmp(id: string): QmpClient | undefined {
    const q = this.live.get(id)?.qmp;
    return q && !q.closed ? q : undefined;
  }

  /** The QMP connection, opened if needed. */
  async qmp(id: string, files: SandboxFiles): Promise<QmpClient> {
    const l = this.live.get(id) ?? {};
    if (!l.qmp || l.qmp.closed) {
      l.qmp = await QmpClient.connect(files.qmpSocket, 10_000);
      this.live.set(id, l);
    }
    return l.qmp;
  }

  agent(id: string, files: SandboxFiles): AgentClient {
    const l = this.live.get(id) ?? {};
    l.agent ??= new AgentClient(files.agentSocket);
    this.live.set(id, l);
    return l.agent;
  }

  /** Ends the sandbox's QEMU if its record names a live one of ours (quit over QMP, then signals). */
  async end(id: string, files: SandboxFiles): Promise<void> {
    const l = this.live.get(id);
    this.live.delete(id);
    l?.agent?.close();
    const r = readRecord(files.dir);
    if (r?.pid && processState(r.pid, r.cmdline) === 'ours') {
      let qmp = l?.qmp;
      if (!qmp || qmp.closed) qmp = await QmpClient.connect(files.qmpSocket, 3000).catch(() => undefined);
      await stopVm({ pid: r.pid, cmdline: r.cmdline!, qmp }, 3000);
    } else l?.qmp?.close();
  }

  /** Lets go of every connection (no VM is stopped); `each` runs for every sandbox let go of. */
  releaseAll(each: (id: string) => void): void {
    for (const [id, l] of this.live) {
      l.qmp?.close();
      l.agent?.close();
      each(id);
    }
    this.live.clear();
  }
}
