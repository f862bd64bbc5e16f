/**
 * The serial console of a sandbox VM for the editor (/sandbox/v1/servers/{id}/console): one
 * connection per VM shared by every viewer and typist, the recent log, bounded keystroke bodies.
 */
import * as fs from 'fs';
import * as net from 'net';
import type { Readable } from 'stream';
import { CloudletError } from '../common/errors';

/** One connection per VM console, shared by every viewer and typist (QEMU serves one client at a time). */
export class ConsoleHub {
  private sock: net.Socket | undefined;
  private readonly viewers = new Set<(b: Buffer) => void>();
  private connecting: Promise<net.Socket> | undefined;
  constructor(private readonly socketPath: string, private readonly onEmpty: () => void) {}

  private connect(): Promise<net.Socket> {
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(this.socketPath);
      s.once('connect', () => { this.sock = s; this.connecting = undefined; resolve(s); });
      s.once('error', (e) => { this.connecting = undefined; reject(new CloudletError('Unavailable', `the VM console is not reachable: ${e.message}`)); });
      s.on('data', (b: Buffer) => { for (const v of this.viewers) v(b); });
      s.on('close', () => { if (this.sock === s) this.sock = undefined; });
    });
    return this.connecting;
  }

  async watch(fn: (b: Buffer) => void): Promise<() => void> {
    await this.connect();
    this.viewers.add(fn);
    return () => {
      this.viewers.delete(fn);
      if (!this.viewers.size) { this.sock?.end(); this.sock = undefined; this.onEmpty(); }
    };
  }

  async write(data: Buffer): Promise<void> {
    const s = await this.connect();
    await new Promise<void>((resolve, reject) => s.write(data, (e) => (e ? reject(e) : resolve())));
    if (!this.viewers.size) { s.end(); this.sock = undefined; this.onEmpty(); }
  }
}

/** The last `bytes` of a file (empty if it cannot be read). */
export function tail(file: string, bytes: number): Buffer {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const n = Math.min(size, bytes);
      const buf = Buffer.alloc(n);
      fs.readSync(fd, buf, 0, n, size - n);
      return buf;
    } finally { fs.closeSync(fd); }
  } catch { return Buffer.alloc(0); }
}

/** A request body (buffer, string or stream) of at most `limit` bytes. */
export async function readBody(body: unknown, limit: number): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  if (body && typeof (body as Readable).on === 'function') {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of body as Readable) {
      n += (c as Buffer).length;
      if (n > limit) throw new CloudletError('BadInput', `console input larger than ${limit} bytes`);
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts);
  }
  return Buffer.alloc(0);
}
