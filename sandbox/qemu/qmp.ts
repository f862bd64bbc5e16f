/**
 * QMP client over a unix socket: capabilities negotiation, typed commands with timeouts, events.
 * One command in flight at a time (QMP answers in order; ids make that explicit anyway).
 */
import { EventEmitter } from 'events';
import * as net from 'net';
import { CloudletError } from '../common/errors';

export interface QmpEvent { event: string; data?: Record<string, unknown>; timestamp?: { seconds: number; microseconds: number } }

/** When QEMU emitted the event, in ms since the epoch (QEMU stamps events with the host's real-time clock). */
export function eventTimeMs(e: QmpEvent): number | undefined {
  const t = e.timestamp;
  return t && Number.isFinite(t.seconds) && Number.isFinite(t.microseconds) && t.seconds >= 0 ? t.seconds * 1000 + t.microseconds / 1000 : undefined;
}

export interface QueryStatus { running: boolean; singlestep?: boolean; status: string }
export interface QueryMigrate {
  status?: 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'postcopy-paused'
  | 'postcopy-recover' | 'completed' | 'failed' | 'colo' | 'pre-switchover' | 'device' | 'wait-unplug';
  'error-desc'?: string;
  'total-time'?: number;
  downtime?: number;
  ram?: { transferred: number; total: number; remaining: number; 'dirty-sync-count'?: number; 'dirty-pages-rate'?: number; mbps?: number };
}
export interface QueryVersion { qemu: { major: number; minor: number; micro: number }; package: string }

/** The commands this project sends, with their argument and return types. */
export interface QmpCommands {
  'qmp_capabilities': [Record<string, never> | undefined, Record<string, never>];
  'query-status': [undefined, QueryStatus];
  'query-version': [undefined, QueryVersion];
  'query-migrate': [undefined, QueryMigrate];
  'migrate-set-capabilities': [{ capabilities: { capability: string; state: boolean }[] }, Record<string, never>];
  'migrate-set-parameters': [{ 'max-bandwidth'?: number; 'downtime-limit'?: number }, Record<string, never>];
  'migrate': [{ uri: string }, Record<string, never>];
  'migrate-incoming': [{ uri: string }, Record<string, never>];
  'migrate_cancel': [undefined, Record<string, never>];
  'stop': [undefined, Record<string, never>];
  'cont': [undefined, Record<string, never>];
  'quit': [undefined, Record<string, never>];
  'system_reset': [undefined, Record<string, never>];
  'human-monitor-command': [{ 'command-line': string }, string];
  'query-block': [undefined, Array<{ device: string; inserted?: { 'node-name'?: string; image?: { 'virtual-size': number } } }>];
  'blockdev-add': [{ driver: 'null-co'; 'node-name': string; size: number; 'read-only': boolean }, Record<string, never>];
  'blockdev-del': [{ 'node-name': string }, Record<string, never>];
  'block-dirty-bitmap-add': [{ node: string; name: string; granularity?: number }, Record<string, never>];
  'block-dirty-bitmap-remove': [{ node: string; name: string }, Record<string, never>];
  'nbd-server-start': [{ addr: { type: 'unix'; data: { path: string } } }, Record<string, never>];
  'nbd-server-stop': [undefined, Record<string, never>];
  'block-export-add': [{ type: 'nbd'; id: string; 'node-name': string; name: string; writable: boolean; bitmaps: Array<{ node: string; name: string }> }, Record<string, never>];
  'block-export-del': [{ id: string; mode?: 'safe' | 'hard' }, Record<string, never>];
}

interface Waiter { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; cmd: string }

export class QmpClient extends EventEmitter {
  private sock?: net.Socket;
  private buf = '';
  private waiters = new Map<string, Waiter>();
  private seq = 0;
  private greeting?: (v: unknown) => void;
  closed = false;

  constructor(readonly socketPath: string) { super(); }

  /**
   * Connects (retrying until QEMU has created the socket) and negotiates capabilities. `signal`
   * stops the retries at once (a QEMU that exited will never answer: nothing may keep waiting).
   */
  static async connect(socketPath: string, timeoutMs = 30_000, signal?: AbortSignal): Promise<QmpClient> {
    const c = new QmpClient(socketPath);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw new CloudletError('Unavailable', `stopped connecting to QMP socket ${socketPath}`, { cause: signal.reason });
      try {
        await c.open(Math.max(1000, deadline - Date.now()));
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new CloudletError('Timeout', `QMP socket ${socketPath} did not answer`, { cause: e });
        await new Promise((r) => setTimeout(r, 10)); // QEMU makes the socket early in its start: retry often
      }
    }
    if (signal?.aborted) { c.close(); throw new CloudletError('Unavailable', `stopped connecting to QMP socket ${socketPath}`, { cause: signal.reason }); }
    await c.execute('qmp_capabilities', undefined, 10_000);
    return c;
  }

  private open(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(this.socketPath);
      s.setEncoding('utf8');
      const t = setTimeout(() => { s.destroy(); reject(new Error('QMP greeting timeout')); }, timeoutMs);
      this.greeting = () => { clearTimeout(t); this.sock = s; resolve(); };
      s.on('data', (d: string) => this.onData(d));
      s.on('error', (e) => { clearTimeout(t); reject(e); }); // later errors: 'close' follows
      s.on('close', () => {
        if (this.sock !== s) return;
        this.closed = true;
        for (const [, w] of this.waiters) { clearTimeout(w.timer); w.reject(new CloudletError('Unavailable', `QEMU closed the QMP connection during ${w.cmd}`)); }
        this.waiters.clear();
        this.emit('close');
      });
    });
  }

  execute<K extends keyof QmpCommands>(cmd: K, args?: QmpCommands[K][0], timeoutMs = 30_000): Promise<QmpCommands[K][1]> {
    return new Promise((resolve, reject) => {
      if (!this.sock || this.closed) { reject(new CloudletError('Unavailable', `QMP not connected (${cmd})`)); return; }
      const id = `c${++this.seq}`;
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new CloudletError('Timeout', `QMP ${cmd} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, cmd });
      this.sock.write(JSON.stringify(args === undefined ? { execute: cmd, id } : { execute: cmd, arguments: args, id }) + '\n');
    });
  }

  /** HMP through QMP, for the few things QMP lacks (hostfwd_add). */
  hmp(commandLine: string): Promise<string> { return this.execute('human-monitor-command', { 'command-line': commandLine }); }

  /** Resolves with the next event of that name (or rejects after timeoutMs). */
  waitEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.off('event', on); reject(new CloudletError('Timeout', `no QMP event ${name} within ${timeoutMs} ms`)); }, timeoutMs);
      const on = (e: QmpEvent) => { if (e.event === name) { clearTimeout(t); this.off('event', on); resolve(e); } };
      this.on('event', on);
    });
  }

  close(): void {
    this.closed = true;
    this.sock?.destroy();
    this.sock = undefined;
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, any>;
      try { msg = JSON.parse(line); } catch { continue; }
      if (msg.QMP) { this.greeting?.(msg); this.greeting = undefined; continue; }
      if (msg.event) { this.emit('event', msg as QmpEvent); continue; }
      const w = typeof msg.id === 'string' ? this.waiters.get(msg.id) : undefined;
      if (!w) continue;
      this.waiters.delete(msg.id);
      clearTimeout(w.timer);
      if (msg.error) w.reject(new CloudletError('Internal', `QMP ${w.cmd}: ${msg.error.desc ?? JSON.stringify(msg.error)}`));
      else w.resolve(msg.return);
    }
  }
}
