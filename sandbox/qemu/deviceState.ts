/**
 * QEMU's device-state stream, the one place that saves it (to a file or a buffer) and loads it
 * (from a file or a buffer). Migrations run with x-ignore-shared, so guest RAM stays in its shared
 * file and only device state travels. The stream always goes through a unix socket this process
 * serves (save) or connects to (load), so every byte passes here and is counted.
 *
 * One completion rule, both ways: a stream is complete only when QEMU emitted the MIGRATION event
 * `completed` for this migration (the `events` capability is set with x-ignore-shared) and, for a
 * save, our side read the stream to its end. query-migrate is not the judge: before a new outgoing
 * migration has connected it can still report an earlier incoming one as `completed`. Anything else
 * (a `failed` or `cancelled` event, QEMU closing QMP, the deadline) is a failure, and nothing of that
 * stream is kept: a failed save can leave a plausible-looking stream behind.
 *
 * Events also keep the handoff's downtime short: no polling interval between QEMU finishing and us
 * noticing, and listenForDeviceState() lets a destination do its set-up before the VM pauses.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import { CloudletError } from '../common/errors';
import type { QmpClient, QmpEvent } from './qmp';
import { failpointHit } from '../common/failpoint';
import { envNumber } from '../common/env';

/** QEMU's migration stream starts with "QEVM" and version 3. */
const STREAM_MAGIC = 0x5145564d;
const STREAM_VERSION = 3;

export interface SavedDeviceState { bytes: number; sha256: string; totalMs: number }

export interface StreamOptions {
  /** The unix socket the stream goes through (a path in the VM's folder; replaced if present). */
  socket: string;
  /** Deadline of the whole save or load. */
  timeoutMs?: number;
}

/** Default deadline of a device-state load; CLOUDLET_INCOMING_TIMEOUT_MS overrides it. */
export function incomingTimeoutMs(): number {
  return envNumber('CLOUDLET_INCOMING_TIMEOUT_MS', 120_000, 1);
}

/** Quick sanity check of a device state (file or bytes): QEMU's stream magic and version. */
export function checkDeviceStateHeader(from: string | Buffer): void {
  let b: Buffer = Buffer.alloc(8);
  let n: number;
  if (typeof from === 'string') {
    const fd = fs.openSync(from, 'r');
    try { n = fs.readSync(fd, b, 0, 8, 0); } finally { fs.closeSync(fd); }
  } else { b = from; n = from.length; }
  if (n < 8 || b.readUInt32BE(0) !== STREAM_MAGIC || b.readUInt32BE(4) !== STREAM_VERSION) {
    throw new CloudletError('Corrupt', `${typeof from === 'string' ? from : 'the device state'} is not a QEMU device state (bad header)`);
  }
}

/**
 * Sets the capabilities every device-state migration here runs with (x-ignore-shared, events).
 * saveDeviceState does it too; a caller about to pause a VM does it ahead to save a round trip.
 */
export async function enableDeviceStateMigration(qmp: QmpClient, timeoutMs?: number): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }, { capability: 'events', state: true }] }, timeoutMs);
}

// ------------------------------------------------------------------------------------- save

/** Where a save's bytes go: appended as they arrive, kept only by commit(). */
interface Sink { write(d: Buffer): boolean; onDrain(fn: () => void): void; commit(): Promise<void>; abort(): void }

class FileSink implements Sink {
  private readonly part: string;
  private readonly out: fs.WriteStream;
  failed?: Error;
  constructor(private readonly file: string) {
    this.part = `${file}.part`;
    this.out = fs.createWriteStream(this.part);
    this.out.on('error', (e) => { this.failed = e; });
  }
  write(d: Buffer): boolean { return this.out.write(d); }
  onDrain(fn: () => void): void { this.out.once('drain', fn); }
  async commit(): Promise<void> {
    await new Promise<void>((resolve, reject) => { if (this.failed) reject(this.failed); else this.out.end(() => (this.failed ? reject(this.failed) : resolve())); });
    const fd = fs.openSync(this.part, 'r+');
    try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
    fs.renameSync(this.part, this.file);
  }
  abort(): void { this.out.destroy(); fs.rmSync(this.part, { force: true }); }
}

class BufferSink implements Sink {
  readonly parts: Buffer[] = [];
  write(d: Buffer): boolean { this.parts.push(d); return true; }
  onDrain(): void { /* never full */ }
  async commit(): Promise<void> { /* the caller takes the parts */ }
  abort(): void { this.parts.length = 0; }
}

/**
 * Pauses the VM (if running) and writes its device state to `file` (via file.part, fsynced and
 * renamed only once complete). The VM is left paused. Also flushes the VM's disk images.
 */
export async function saveDeviceStateToFile(qmp: QmpClient, file: string, o: StreamOptions & { capabilitiesSet?: boolean }): Promise<SavedDeviceState & { file: string }> {
  const sink = new FileSink(file);
  const r = await save(qmp, sink, o);
  return { ...r, file };
}

/** As saveDeviceStateToFile, into memory (the handoff's paused round: the state only has to reach the destination). */
export async function saveDeviceStateToBuffer(qmp: QmpClient, o: StreamOptions & { capabilitiesSet?: boolean }): Promise<SavedDeviceState & { data: Buffer }> {
  const sink = new BufferSink();
  const r = await save(qmp, sink, o);
  return { ...r, data: Buffer.concat(sink.parts) };
}

async function save(qmp: QmpClient, sink: Sink, o: StreamOptions & { capabilitiesSet?: boolean }): Promise<SavedDeviceState> {
  const t0 = Date.now();
  const timeoutMs = o.timeoutMs ?? 120_000;
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  const server = net.createServer();
  let watch: MigrationWatch | undefined;
  try {
    const st = await qmp.execute('query-status');
    if (st.running) await qmp.execute('stop');
    if (!o.capabilitiesSet) await enableDeviceStateMigration(qmp);
    fs.rmSync(o.socket, { force: true });
    const ended = new Promise<void>((resolve, reject) => {
      server.once('connection', (s) => {
        server.close();
        s.on('data', (d: Buffer) => {
          hash.update(d);
          bytes += d.length;
          if (!sink.write(d)) { s.pause(); sink.onDrain(() => s.resume()); }
        });
        s.once('end', () => resolve());
        s.on('error', reject);
      });
    });
    ended.catch(() => undefined);
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(o.socket, () => resolve()); });
    watch = watchMigration(qmp, 'saving the device state');
    await qmp.execute('migrate', { uri: `unix:${o.socket}` });
    await watch.completed(Date.now() + timeoutMs, ended);
    await sink.commit();
    return { bytes, sha256: hash.digest('hex'), totalMs: Date.now() - t0 };
  } catch (e) {
    sink.abort();
    if (e instanceof CloudletError && e.code === 'Timeout') await qmp.execute('migrate_cancel').catch(() => undefined);
    throw e;
  } finally {
    watch?.stop();
    server.close();
    fs.rmSync(o.socket, { force: true });
  }
}

// ------------------------------------------------------------------------------------- load

/**
 * Makes a QEMU started with `-incoming defer` (and -S) wait for a device state on `socket`
 * (capabilities, then migrate-incoming). loadDeviceState(..., {listening: true}) then only streams.
 */
export async function listenForDeviceState(qmp: QmpClient, socket: string, timeoutMs?: number): Promise<void> {
  await enableDeviceStateMigration(qmp, timeoutMs);
  fs.rmSync(socket, { force: true });
  await qmp.execute('migrate-incoming', { uri: `unix:${socket}` }, timeoutMs);
}

/**
 * Connects to a QEMU listening for a device state (listenForDeviceState) ahead of the state: QEMU
 * takes the connection and waits for the stream, so a later loadDeviceState({ connected }) only
 * writes it. Closing this socket without a state makes QEMU fail its incoming migration (it exits).
 */
export async function connectForDeviceState(socket: string, timeoutMs = incomingTimeoutMs()): Promise<net.Socket> {
  const s = await connectRetry(socket, Date.now() + timeoutMs, new AbortController().signal);
  s.on('error', () => undefined); // QEMU going away: the load (or the sandbox's end) says so
  return s;
}

/**
 * Streams a device state (a file, or bytes) into a QEMU started with `-incoming defer` (and -S)
 * and returns once QEMU has loaded it; the VM stays paused (the caller sends `cont`). One deadline
 * covers every phase; when it passes, the load fails with a Timeout naming the phase and what QEMU
 * reported, and the caller ends the QEMU. A QEMU that cannot load a state exits: that is a Corrupt.
 */
export async function loadDeviceState(qmp: QmpClient, from: string | Buffer, o: StreamOptions & { listening?: boolean; connected?: net.Socket }): Promise<void> {
  const timeoutMs = o.timeoutMs ?? incomingTimeoutMs();
  const deadline = Date.now() + timeoutMs;
  const what = typeof from === 'string' ? `device state ${from}` : 'device state';
  const data = typeof from === 'string' ? fs.readFileSync(from) : from;
  checkDeviceStateHeader(data);
  let phase = 'setting the migration capabilities';
  const tx = { sent: false, closed: false, error: '' };
  let sock: net.Socket | undefined;
  const watch = watchMigration(qmp, `loading the ${what}`);
  const timedOut = async (): Promise<never> => {
    const qemu = await describeMigration(qmp);
    const stream = !sock ? 'not connected' : tx.sent ? `all ${data.length} bytes sent` : `${data.length} bytes not all sent${tx.closed ? ', QEMU closed the socket' : ''}`;
    throw new CloudletError('Timeout', `incoming migration: ${phase} did not finish within ${timeoutMs} ms (QEMU: ${qemu}; ${what}: ${stream}${tx.error ? `, ${tx.error}` : ''})`);
  };
  // Each phase ends at the deadline or when QEMU fails (it exits when a state does not load).
  const step = <T>(p: Promise<T>): Promise<T> => beforeDeadline(Promise.race([p, watch.failure]), deadline, timedOut);
  const left = () => Math.max(1, deadline - Date.now()) + 1000; // inner timeouts: the phase deadline reports first
  const done = new AbortController();
  try {
    if (!o.listening) {
      await step(enableDeviceStateMigration(qmp, left()));
      fs.rmSync(o.socket, { force: true });
      phase = 'migrate-incoming';
      await step(qmp.execute('migrate-incoming', { uri: `unix:${o.socket}` }, left()));
    }
    phase = 'connecting to QEMU\'s migration socket';
    // Connected ahead (connectForDeviceState): QEMU already waits for the stream on it.
    sock = o.connected && !o.connected.destroyed ? o.connected : await step(connectRetry(o.socket, deadline, done.signal));
    phase = 'streaming and loading the device state';
    sock.on('error', (e) => { tx.error = e.message; }); // QEMU closing early: the migration's end says why
    sock.once('close', () => { tx.closed = true; });
    if (failpointHit('incoming-stall')) sock.write(data.subarray(0, Math.min(4096, data.length))); // test hook: never ends
    else sock.end(data, () => { tx.sent = true; });
    await watch.completed(deadline, undefined, timedOut);
  } finally {
    done.abort();
    watch.stop();
    sock?.destroy();
    fs.rmSync(o.socket, { force: true });
  }
}

// ------------------------------------------------------------------------------------- completion

interface MigrationWatch {
  /** Resolves when QEMU said `completed` (and `streamEnded` resolved); rejects on failure or at the deadline. */
  completed(deadline: number, streamEnded?: Promise<void>, onTimeout?: () => Promise<never>): Promise<void>;
  /** Rejects when the migration failed (never resolves). */
  failure: Promise<never>;
  stop(): void;
}

/** Listens to MIGRATION events (and QMP closing) from now on: subscribe before starting the migration. */
function watchMigration(qmp: QmpClient, what: string): MigrationWatch {
  let settle: ((r: { ok: true } | { ok: false; error: Error }) => void) | undefined;
  let outcome: { ok: true } | { ok: false; error: Error } | undefined;
  let fail: (e: Error) => void = () => undefined;
  const failure = new Promise<never>((_, reject) => { fail = reject; });
  failure.catch(() => undefined);
  const finish = (r: { ok: true } | { ok: false; error: Error }) => {
    outcome ??= r;
    if (!outcome.ok) fail(outcome.error);
    settle?.(outcome);
  };
  const onEvent = (e: QmpEvent) => {
    if (e.event !== 'MIGRATION') return;
    const st = String(e.data?.status);
    if (st === 'completed') finish({ ok: true });
    else if (st === 'failed' || st === 'cancelled') {
      void describeMigration(qmp).then((d) => finish({ ok: false, error: new CloudletError(what.startsWith('loading') ? 'Corrupt' : 'Internal', `${what}: QEMU reports the migration ${st} (${d})`) }));
    }
  };
  const onClose = () => finish({ ok: false, error: new CloudletError(what.startsWith('loading') ? 'Corrupt' : 'Unavailable', `${what}: QEMU exited (QMP closed) before the migration completed`) });
  qmp.on('event', onEvent);
  qmp.once('close', onClose);
  if (qmp.closed) onClose();
  const stop = () => { qmp.off('event', onEvent); qmp.off('close', onClose); };
  return {
    stop,
    failure,
    async completed(deadline, streamEnded, onTimeout) {
      const said = new Promise<void>((resolve, reject) => {
        settle = (r) => (r.ok ? resolve() : reject(r.error));
        if (outcome) settle(outcome);
      });
      const both = streamEnded ? Promise.all([said, streamEnded]).then(() => undefined) : said;
      await beforeDeadline(both, deadline, onTimeout ?? (async () => {
        throw new CloudletError('Timeout', `${what} did not complete within the deadline (QEMU: ${await describeMigration(qmp)})`);
      }));
    },
  };
}

/** What QEMU says about the current migration, for messages (never throws). */
export async function describeMigration(qmp: QmpClient): Promise<string> {
  try {
    const st = await qmp.execute('query-status', undefined, 2000);
    const m = await qmp.execute('query-migrate', undefined, 2000);
    return `status ${st.status}, migration ${m.status ?? 'none'}${m['error-desc'] ? ` (${m['error-desc']})` : ''}`;
  } catch (e) {
    return `no answer (${(e as Error).message})`;
  }
}

async function beforeDeadline<T>(p: Promise<T>, deadline: number, onTimeout: () => Promise<never>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((r) => { timer = setTimeout(() => r('expired'), Math.max(1, deadline - Date.now())); });
  try {
    const v = await Promise.race([p, expired]);
    if (v === 'expired') return await onTimeout();
    return v as T;
  } finally { clearTimeout(timer); }
}

/** Connects to QEMU's listening socket, retrying until the deadline or until `stop` is aborted. */
function connectRetry(p: string, deadline: number, stop: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (stop.aborted) { reject(new CloudletError('Unavailable', `gave up connecting to ${p}`)); return; }
      const s = net.createConnection(p);
      let connected = false;
      s.once('connect', () => { connected = true; resolve(s); });
      s.on('error', (e) => {
        s.destroy();
        if (connected) return; // the stream's own errors surface through the migration's end
        if (Date.now() > deadline) reject(new CloudletError('Timeout', `QEMU did not open ${p} for the incoming state`, { cause: e }));
        else setTimeout(attempt, 20);
      });
    };
    attempt();
  });
}
