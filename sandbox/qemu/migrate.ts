/**
 * Device state save and load over QMP with x-ignore-shared: guest RAM stays in its shared file,
 * only device state goes through the migration stream. The stream goes through a unix socket that
 * this process serves (not `exec:cat`), so we see every byte, hash it, and know the file is whole
 * before calling the save complete. A state is kept only when query-migrate said `completed`.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import { CloudletError } from '../common/errors';
import type { QmpClient } from './qmp';

export interface SavedState { file: string; bytes: number; sha256: string; totalMs: number }

async function setIgnoreShared(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
}

/** Pauses the VM (if running) and writes its device state to `file`. The VM is left paused. */
export async function saveDeviceState(qmp: QmpClient, file: string, sockPath: string, timeoutMs = 120_000): Promise<SavedState> {
  const t0 = Date.now();
  const st = await qmp.execute('query-status');
  if (st.running) await qmp.execute('stop');
  await setIgnoreShared(qmp);
  fs.rmSync(sockPath, { force: true });
  const part = `${file}.part`;
  const out = fs.createWriteStream(part);
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  const server = net.createServer();
  const received = new Promise<void>((resolve, reject) => {
    server.once('connection', (s) => {
      server.close();
      s.on('data', (d: Buffer) => { hash.update(d); bytes += d.length; if (!out.write(d)) { s.pause(); out.once('drain', () => s.resume()); } });
      s.once('end', () => out.end(() => resolve()));
      s.on('error', reject);
    });
    out.once('error', reject);
  });
  received.catch(() => undefined);
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sockPath, () => resolve()); });
  try {
    await qmp.execute('migrate', { uri: `unix:${sockPath}` });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await qmp.execute('query-migrate');
      if (m.status === 'completed') break;
      if (m.status === 'failed' || m.status === 'cancelled') {
        throw new CloudletError('Internal', `saving the device state ${m.status}${m['error-desc'] ? `: ${m['error-desc']}` : ' (QEMU gave no reason)'}`);
      }
      if (Date.now() > deadline) {
        await qmp.execute('migrate_cancel').catch(() => undefined);
        throw new CloudletError('Timeout', `saving the device state did not complete within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await withTimeout(received, 30_000, 'the device state stream did not end');
    const fd = fs.openSync(part, 'r+');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(part, file);
    return { file, bytes, sha256: hash.digest('hex'), totalMs: Date.now() - t0 };
  } catch (e) {
    out.destroy();
    fs.rmSync(part, { force: true });
    throw e;
  } finally {
    server.close();
    fs.rmSync(sockPath, { force: true });
  }
}

/** Default deadline of each incoming-migration phase; CLOUDLET_INCOMING_TIMEOUT_MS overrides it. */
export function incomingTimeoutMs(): number {
  const v = Number(process.env.CLOUDLET_INCOMING_TIMEOUT_MS);
  return Number.isFinite(v) && v > 0 ? v : 120_000;
}

/**
 * Streams a saved device state into a QEMU started with `-incoming defer` (and -S), and returns once
 * QEMU has loaded it (status no longer `inmigrate`). Every phase (capabilities, migrate-incoming,
 * connecting, streaming + loading) shares one deadline; when it passes the load fails with a
 * Timeout naming the phase and what QEMU reported, and the caller ends the QEMU.
 *
 * Completion is judged only by QEMU (query-status / query-migrate), never by our side of the socket:
 * QEMU closes the connection as soon as it has read the stream, and a paused read stream piped into
 * a socket that closed never emits 'end' (that wait hung launches for good).
 */
export async function loadDeviceState(qmp: QmpClient, file: string, sockPath: string, timeoutMs = incomingTimeoutMs()): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const inner = () => left() + 1000; // the phase deadline, not a QMP/connect timeout, reports first
  let phase = 'setting x-ignore-shared';
  const data = fs.readFileSync(file);
  const tx = { sent: false, closed: false, error: '' };
  let sock: net.Socket | undefined;
  const timedOut = async (): Promise<never> => {
    const qemu = await describeIncoming(qmp);
    const stream = !sock ? 'not connected' : tx.sent ? `all ${data.length} bytes sent` : `${data.length} bytes not all sent${tx.closed ? ', QEMU closed the socket' : ''}`;
    throw new CloudletError('Timeout', `incoming migration: ${phase} did not finish within ${timeoutMs} ms (QEMU: ${qemu}; device state ${file}: ${stream}${tx.error ? `, ${tx.error}` : ''})`);
  };
  const step = async <T>(p: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((r) => { timer = setTimeout(() => r('expired'), left()); });
    try {
      const v = await Promise.race([p, expired]);
      if (v === 'expired') return await timedOut();
      return v as T;
    } finally { clearTimeout(timer); }
  };
  try {
    await step(qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] }, inner()));
    fs.rmSync(sockPath, { force: true });
    phase = 'migrate-incoming';
    await step(qmp.execute('migrate-incoming', { uri: `unix:${sockPath}` }, inner()));
    phase = 'connecting to QEMU\'s migration socket';
    sock = await step(connectRetry(sockPath, inner()));
    phase = 'streaming and loading the device state';
    sock.on('error', (e) => { tx.error = e.message; }); // QEMU closing early: its status says why
    sock.once('close', () => { tx.closed = true; });
    if (process.env.CLOUDLET_FAILPOINT === 'incoming-stall') sock.write(data.subarray(0, Math.min(4096, data.length))); // test hook: never ends
    else sock.end(data, () => { tx.sent = true; });
    for (;;) {
      const st = await step(qmp.execute('query-status', undefined, inner()));
      const m = await step(qmp.execute('query-migrate', undefined, inner()));
      if (m.status === 'failed' || m.status === 'cancelled') throw new CloudletError('Corrupt', `QEMU could not load the device state ${file}${m['error-desc'] ? `: ${m['error-desc']}` : ` (migration ${m.status})`}`);
      if (st.status !== 'inmigrate') break;
      if (Date.now() >= deadline) await timedOut();
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    sock?.destroy();
    fs.rmSync(sockPath, { force: true });
  }
}

/** What QEMU says about an incoming migration, for error messages (never throws). */
export async function describeIncoming(qmp: QmpClient): Promise<string> {
  try {
    const st = await qmp.execute('query-status', undefined, 2000);
    const m = await qmp.execute('query-migrate', undefined, 2000);
    return `status ${st.status}, migration ${m.status ?? 'none'}${m['error-desc'] ? ` (${m['error-desc']})` : ''}`;
  } catch (e) {
    return `no answer (${(e as Error).message})`;
  }
}

function connectRetry(p: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.createConnection(p);
      let connected = false;
      s.once('connect', () => { connected = true; resolve(s); });
      s.on('error', (e) => {
        s.destroy();
        if (connected) return; // the stream's own errors surface through the pipe
        if (Date.now() > deadline) reject(new CloudletError('Timeout', `QEMU did not open ${p} for the incoming state`, { cause: e }));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new CloudletError('Timeout', what)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}

/** Quick sanity check of a device state file: QEMU's stream magic "QEVM" and version 3. */
export function checkStateHeader(file: string): void {
  const fd = fs.openSync(file, 'r');
  const b = Buffer.alloc(8);
  const n = fs.readSync(fd, b, 0, 8, 0);
  fs.closeSync(fd);
  if (n < 8 || b.readUInt32BE(0) !== 0x5145564d || b.readUInt32BE(4) !== 3) {
    throw new CloudletError('Corrupt', `${file} is not a QEMU device state (bad header)`);
  }
}
