/**
 * Host side of the guest agent protocol (sandbox/guest/agent.sh documents it): one connection to
 * the agent's unix socket, requests serialised, replies matched by id (stale replies from before a
 * save/resume or a timed-out request are skipped).
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { CloudletError } from '../common/errors';

export interface ExecResult { stdout: string; stderr: string; exitCode: number }

const COPY_CHUNK = 3 * 1024; // protocol 1: raw bytes per line (4 KiB of base64)
const RAW_CHUNK = 1024 * 1024; // protocol 2: raw bytes per K request (one head(1) in the guest each)

interface Pending {
  id: string;
  out: string[];
  err: string[];
  resolve: (r: Reply) => void;
}

interface Reply { out: string; err: string; status: number; version: number }

export class AgentClient {
  private sock?: net.Socket;
  private buf = '';
  private scanned = 0;
  private pending?: Pending;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;
  /** Protocol version of the agent on this connection, from its last ping answer (1 if it gives none). */
  private version = 1;
  /** Bumped by close(): waits begun before it give up. */
  private generation = 0;
  private readonly tag = Math.random().toString(36).slice(2, 8);

  constructor(private readonly socketPath: string) {}

  /** Runs `cmd` with `sh` in the guest. timeoutMs bounds the whole call (and the guest command). */
  exec(cmd: string, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const guestTimeout = Math.max(1, Math.ceil(timeoutMs / 1000));
    return this.serial(async () => {
      const deadline = Date.now() + timeoutMs;
      await this.ready(deadline);
      const r = this.version >= 2
        ? await this.request('R', [String(guestTimeout), escapeCommand(cmd)], deadline)
        : await this.request('X', [String(guestTimeout), Buffer.from(cmd).toString('base64')], deadline);
      return { stdout: r.out, stderr: r.err, exitCode: r.status };
    });
  }

  /** Waits until the agent answers a ping. */
  ping(timeoutMs = 30_000): Promise<void> {
    return this.serial(() => this.ready(Date.now() + timeoutMs));
  }

  /** Copies a host file to guestPath (mode from the host file), atomically in the guest. */
  copyIn(hostPath: string, guestPath: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const data = fs.readFileSync(hostPath);
    const mode = (fs.statSync(hostPath).mode & 0o7777).toString(8);
    return this.serial(async () => {
      const deadline = Date.now() + (opts.timeoutMs ?? 60_000 + data.length / 10);
      await this.ready(deadline);
      const id = this.nextId();
      const start = await this.request('W', [Buffer.from(guestPath).toString('base64'), mode], deadline, id);
      if (start.status !== 0) throw new CloudletError('Internal', `guest refused the copy to ${guestPath}: ${start.err}`);
      if (this.version >= 2) {
        for (let off = 0; off < data.length; off += RAW_CHUNK) {
          const chunk = data.subarray(off, off + RAW_CHUNK);
          this.write(`K ${id} ${chunk.length}\n`);
          this.write(chunk);
        }
      } else {
        for (let off = 0; off < data.length; off += COPY_CHUNK) {
          this.write(`C ${id} ${data.subarray(off, off + COPY_CHUNK).toString('base64')}\n`);
        }
      }
      const done = await this.request('F', [], deadline, id);
      if (done.status !== 0) throw new CloudletError('Internal', `copy to ${guestPath} failed in the guest: ${done.err.trim()}`);
    });
  }

  /**
   * Connects without talking. Done right after QEMU starts and before the device state loads, the
   * guest never sees the host go away, so its agent answers at once after `cont`.
   */
  attach(timeoutMs = 10_000): Promise<void> {
    return this.serial(async () => {
      const deadline = Date.now() + timeoutMs;
      while (!this.sock) {
        try { await this.connect(); } catch (e) {
          if (Date.now() > deadline) throw e;
          await sleep(20);
        }
      }
    });
  }

  /** Ends the connection; a ping or command still waiting for the agent gives up at once (Cancelled). */
  close(): void {
    this.generation++;
    this.drop();
  }

  private drop(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private nextId(): string { return `${this.tag}${++this.seq}`; }

  /** Connects (again) if needed and pings until the agent answers: the VM may just have resumed. */
  private async ready(deadline: number): Promise<void> {
    let lastErr: unknown;
    const generation = this.generation;
    while (Date.now() < deadline) {
      // Closed meanwhile (the VM is gone): retrying until the deadline would only keep the process alive.
      if (generation !== this.generation) throw new CloudletError('Cancelled', `the connection to the guest agent on ${this.socketPath} was closed`);
      try {
        if (!this.sock) await this.connect();
        const r = await this.request('P', [], Math.min(deadline, Date.now() + 5_000));
        if (r.status === 0) { this.version = r.version; return; }
      } catch (e) {
        lastErr = e;
        if (!isTimeout(e)) { this.drop(); await sleep(200); }
      }
    }
    throw new CloudletError('Timeout', `the guest agent did not answer on ${this.socketPath}`, {
      hint: 'is the agent running in the guest (sandbox/guest/agent.sh)?', cause: lastErr,
    });
  }

  private connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(this.socketPath);
      s.setEncoding('utf8');
      s.once('connect', () => { this.sock = s; this.buf = ''; this.scanned = 0; this.version = 1; resolve(); });
      s.on('error', (e) => { reject(e); }); // later errors: 'close' follows and ends the connection
      s.on('data', (d: string) => this.onData(d));
      s.on('close', () => {
        if (this.sock === s) this.sock = undefined;
        // A reply that can no longer come: the caller's deadline ends the wait.
      });
    });
  }

  private write(data: string | Buffer): void {
    if (!this.sock) throw new CloudletError('Unavailable', `agent connection ${path.basename(this.socketPath)} closed`);
    this.sock.write(data);
  }

  private request(verb: string, args: string[], deadline: number, id = this.nextId()): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.id === id) this.pending = undefined;
        reject(new CloudletError('Timeout', `guest agent: no answer to ${verb === 'X' || verb === 'R' ? 'the command' : verb} in time`));
      }, Math.max(1, deadline - Date.now()));
      this.pending = {
        id, out: [], err: [],
        resolve: (r) => { clearTimeout(timer); resolve(r); },
      };
      try {
        this.write(`${[verb, id, ...args].join(' ')}\n`);
      } catch (e) { clearTimeout(timer); this.pending = undefined; reject(e); }
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    // A stream may come as one long line: look for its end only in what arrived since the last look.
    while ((nl = this.buf.indexOf('\n', this.scanned)) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.scanned = 0;
      const [kind, id, payload, extra] = line.split(' ');
      const p = this.pending;
      if (!p || id !== p.id) continue; // stale: from a request that timed out or an earlier host
      if (kind === 'O') p.out.push(payload ?? '');
      else if (kind === 'E') p.err.push(payload ?? '');
      else if (kind === 'D') {
        this.pending = undefined;
        p.resolve({
          out: Buffer.from(p.out.join(''), 'base64').toString('utf8'),
          err: Buffer.from(p.err.join(''), 'base64').toString('utf8'),
          status: Number(payload),
          version: Number(extra) || 1,
        });
      }
    }
    this.scanned = this.buf.length;
  }
}

/**
 * A command for the agent's R request: printable ASCII as is, every other byte (space, newline,
 * backslash, control, non-ASCII) as \0ooo, which the agent's `printf %b` (a shell builtin) decodes.
 */
export function escapeCommand(cmd: string): string {
  let out = '';
  for (const b of Buffer.from(cmd, 'utf8')) {
    out += b > 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\0${b.toString(8).padStart(3, '0')}`;
  }
  return out;
}

function isTimeout(e: unknown): boolean { return e instanceof CloudletError && e.code === 'Timeout'; }
function sleep(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }
