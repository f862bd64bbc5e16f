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

/** Streams a saved device state into a QEMU started with `-incoming defer` (and -S). */
export async function loadDeviceState(qmp: QmpClient, file: string, sockPath: string, timeoutMs = 120_000): Promise<void> {
  await setIgnoreShared(qmp);
  fs.rmSync(sockPath, { force: true });
  await qmp.execute('migrate-incoming', { uri: `unix:${sockPath}` });
  const sock = await connectRetry(sockPath, 10_000);
  await new Promise<void>((resolve, reject) => {
    const rs = fs.createReadStream(file);
    rs.once('error', reject);
    sock.on('error', reject);
    rs.pipe(sock);
    rs.once('end', () => resolve());
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await qmp.execute('query-status');
    if (st.status !== 'inmigrate') {
      const m = await qmp.execute('query-migrate');
      if (m.status === 'failed') throw new CloudletError('Corrupt', `QEMU could not load the device state ${file}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`);
      break;
    }
    const m = await qmp.execute('query-migrate');
    if (m.status === 'failed') throw new CloudletError('Corrupt', `QEMU could not load the device state ${file}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`);
    if (Date.now() > deadline) throw new CloudletError('Timeout', `loading the device state ${file} did not finish within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  sock.destroy();
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
