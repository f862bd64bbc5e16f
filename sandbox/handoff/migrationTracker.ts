/**
 * The handoff's dirty-page tracker: QEMU's own live migration, run into a unix socket served here.
 * QEMU tracks the pages the guest writes (its dirty bitmap, exact for every write: vCPUs, devices,
 * DMA), sends every page once and then each page written since, and stops the VM by itself when
 * what is left fits its downtime budget; then it sends the last pages and the device state. Each
 * RAM page that arrives is compared with the copy of what the destination holds (ShadowPageTracker)
 * and kept only if it differs, so a round costs what the guest wrote, not the size of its RAM, and
 * the paused part costs only the pages written in QEMU's last iteration.
 *
 * Pages are recorded as sent only when the sender takes them for a round (take()): if the stream
 * turns out unusable midway, the tracker is cancelled (the VM runs on), what was not sent is
 * dropped, and the shadow still says exactly what the destination holds (the full compare can take
 * over). Backpressure: above PENDING_PAGES unsent pages the socket is paused until the next round
 * is taken, so QEMU's migration goes at the pace of our rounds to the destination, not of a local
 * socket: its bandwidth estimate (and so the point where it stops the VM) then covers the whole way,
 * and what is left to send when it stops is at most about one round (measured: with a 64 MiB limit
 * on the 1 GiB Debian guest, QEMU stopped the VM 61 s before our rounds had caught up).
 */
import * as fs from 'fs';
import * as net from 'net';
import { CloudletError, describeError } from '../common/errors';
import type { QmpClient, QmpEvent } from '../qemu/qmp';
import { MigrationStreamParser, PAGE_SIZE, buildIgnoreSharedState, continuesSavedState, stateAfterSaved, type SavedState } from '../qemu/migrationStream';
import type { PageCopy } from './dirtyPageTracker';
import { envNumber } from '../common/env';

/** The RAM block that is the shared RAM file (memory-backend-file id=mem). */
export const SHARED_BLOCK = 'mem';
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE);
/** Unsent differing pages at most before the socket is paused (4 MiB; CLOUDLET_HANDOFF_PENDING_PAGES). */
function pendingLimit(): number { return envNumber('CLOUDLET_HANDOFF_PENDING_PAGES', 1024, 1); }

/**
 * QEMU's downtime budget for the tracker's migration, in ms (CLOUDLET_HANDOFF_DOWNTIME_MS; default 0).
 * QEMU (7.2, migration.c / ram.c) syncs its dirty log whenever what is left to send is under
 * budget x its measured bandwidth into our socket, and stops the VM when it is still under it after
 * the sync. Into our local socket that bandwidth is high: with QEMU's own 300 ms the test guest's whole
 * 128 MiB was "under budget" from the start, so QEMU stopped the VM early in its first pass and sent
 * the rest of it with the VM stopped (13,588 pages, 121-156 ms of our pause for 26-183 that differed;
 * 3 dirty-log syncs). With 0, QEMU never syncs before its first pass is all sent (nothing is "under"
 * a budget of 0) and stops the VM right after it (nothing left): the last pass holds only the pages
 * written during the first pass (285-310 on the idle test guest, 9-25 ms), with one sync while the
 * vCPUs run (the setup one) and one with the VM stopped. Small non-zero budgets are worse than either:
 * QEMU then syncs over and over while the vCPUs run, and QEMU 7.2 TCG lost guest writes that way
 * (10 ms to a second QEMU, no code of ours: the destination's RAM differed in 3 of 3 runs; 30 ms: our
 * RAM check failed 3 of 4 handoffs; bench/RESULTS.md). A first pass that takes long (a big or busy
 * guest held back by the rounds) switches to QEMU's iterating budget: downtimeBudget().
 */
export function trackerDowntimeMs(): number { return envNumber('CLOUDLET_HANDOFF_DOWNTIME_MS', 0, 0); }

/** The iterating budget a long migration switches to (QEMU's own default), in ms. */
export const ITERATING_DOWNTIME_MS = 300;

/**
 * The downtime budget after `elapsedMs` of migration: the configured one for 10 s, then QEMU's
 * iterating budget (at least ITERATING_DOWNTIME_MS) doubled every 5 s up to 2 s, so that a guest
 * writing faster than its pages can be sent still converges.
 */
export function downtimeBudget(initialMs: number, elapsedMs: number): number {
  if (elapsedMs < 10_000) return initialMs;
  const from = Math.max(initialMs, ITERATING_DOWNTIME_MS);
  const steps = Math.floor((elapsedMs - 10_000) / 5000);
  return Math.min(Math.max(2000, from), from * 2 ** steps);
}

export interface TakenPage { index: number; data: Buffer; digest: Buffer }

/**
 * When each part of QEMU's stop arrived here (ms since the epoch; `stop` is QEMU's own clock) and
 * what its last pass held: the pause broken down for the report (phases_ms).
 */
export interface TrackerTimeline {
  stop?: number;
  /** The RAM section's END began (QEMU's last pass). */
  finalPass?: number;
  /** Its last page parsed. */
  completing?: number;
  /** The stream's end (device state all here). */
  streamEnd?: number;
  /** QEMU's first pass reached the gate (start()'s gateAt) and was held there. */
  gateHeld?: number;
  /** It reached the late gate (start()'s lateGateAt) and was held there. */
  lateGateHeld?: number;
  /** Pages of the last pass (any block), and of those the `mem` pages that differ from the destination's. */
  finalPages: number;
  finalDiffering: number;
  /** QEMU's figures for the tracking migration (query-migrate once completed). */
  qemuDowntimeMs?: number;
  qemuTotalMs?: number;
  qemuSyncs?: number;
}

export class MigrationTracker {
  /** Wall-clock ms at which QEMU stopped the VM (its STOP event), once it did. */
  stoppedAt?: number;
  /** Set when the stream could not be used (the caller falls back); the migration is then cancelled. */
  failure?: Error;
  readonly timeline: TrackerTimeline = { finalPages: 0, finalDiffering: 0 };
  private readonly parser: MigrationStreamParser;
  /** Unsent differing pages: their bytes (undefined: zeros) and SHA-256, taken on arrival (not in the paused round). */
  private readonly pending = new Map<number, { data: Buffer | undefined; digest: Buffer }>();
  /** Unsent pages at which the socket is paused (and the sender sends a round): holdBackAt(). */
  private pendingLimitNow = pendingLimit();
  get pendingMax(): number { return this.pendingLimitNow; }
  private readonly otherBlocks = new Map<string, Map<number, Buffer | undefined>>();
  private readonly server = net.createServer();
  private sock?: net.Socket;
  private waiters: Array<() => void> = [];
  private streamEnded = false;
  private qemuStatus = 'setup';
  private readonly startedAt = Date.now();
  /** When stateReady() first resolved, and the stream's bytes after the RAM when deviceState() was taken. */
  stateAt?: number;
  private stateTail?: number;
  private budgetTimer?: NodeJS.Timeout;
  /**
   * Where QEMU's first pass is held (byte offsets in the shared block, ascending) until the sender has
   * sent what the pass found so far (openGate()): see start()'s `gateAt` and `lateGateAt`.
   */
  private readonly gates: Array<{ at: number; state: 'armed' | 'held' | 'open' }> = [];
  /** The first gate not opened yet (gates are passed in order). */
  private gateNo = 0;
  private get gate(): { at: number; state: 'armed' | 'held' | 'open' } | undefined { return this.gates[this.gateNo]; }
  private gateOpenedAt?: number;
  private readonly onEvent = (e: QmpEvent) => {
    if (e.event === 'STOP' && this.stoppedAt === undefined) {
      this.stoppedAt = e.timestamp ? e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000 : Date.now();
      this.timeline.stop = this.stoppedAt;
      this.sock?.resume(); // no backpressure once the VM is stopped: its last pass is downtime
      this.wake();
    }
    if (e.event === 'MIGRATION') {
      this.qemuStatus = String(e.data?.status);
      if (this.qemuStatus === 'failed') this.fail(new CloudletError('Internal', 'QEMU reports the tracking migration failed'));
      this.wake();
    }
  };

  private constructor(private readonly qmp: QmpClient, private readonly socket: string, private readonly shadow: PageCopy) {
    this.parser = new MigrationStreamParser({
      page: (block, offset, data, final) => this.onPage(block, offset, data, final),
      finalPass: () => { this.timeline.finalPass = Date.now(); this.sock?.resume(); this.wake(); },
      completing: () => { this.timeline.completing = Date.now(); this.wake(); },
    });
  }

  /** Starts QEMU's migration of the running VM into `socket` (served here). */
  /**
   * `gateAt`: QEMU's first pass is held once it reaches this byte offset of the shared block (the
   * socket is not read), until openGate(). QEMU stops the VM when it has passed over everything and
   * what is left fits its budget, so a pass held before its end with more stream left than the
   * socket buffers can take cannot end: what it found differing (pages written since round 0 was
   * made) goes in a live round instead of the paused one, and round 0 is known applied before QEMU
   * may stop the VM.
   * `lateGateAt` (after `gateAt`): a second hold nearer the pass's end, so that what the pass finds
   * between the two (the top of RAM, where the guest kernel allocates first) goes in a live round too
   * and only the stream after it waits for the pause. Its stream after it may fit the socket buffers:
   * then QEMU can end the pass there and stop the VM (only that round then falls in the pause).
   */
  static async start(qmp: QmpClient, socket: string, shadow: PageCopy, o: { downtimeMs?: number; gateAt?: number; lateGateAt?: number } = {}): Promise<MigrationTracker> {
    const t = new MigrationTracker(qmp, socket, shadow);
    if (o.gateAt !== undefined) {
      t.gates.push({ at: o.gateAt, state: 'armed' });
      if (o.lateGateAt !== undefined && o.lateGateAt > o.gateAt) t.gates.push({ at: o.lateGateAt, state: 'armed' });
    }
    const downtime = o.downtimeMs ?? trackerDowntimeMs();
    try {
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: false }, { capability: 'events', state: true }] });
      // The socket is local: QEMU's default 128 MiB/s cap would only slow the first pass.
      await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 8 << 30, 'downtime-limit': downtime });
      fs.rmSync(socket, { force: true });
      t.server.once('connection', (s) => t.attach(s));
      await new Promise<void>((resolve, reject) => { t.server.once('error', reject); t.server.listen(socket, () => resolve()); });
      qmp.on('event', t.onEvent);
      qmp.once('close', () => t.fail(new CloudletError('Unavailable', 'QEMU exited (QMP closed) during the tracking migration')));
      await qmp.execute('migrate', { uri: `unix:${socket}` });
      t.budgetTimer = setInterval(() => {
        // With a gate, the budget grows only from when the first pass went past it: a first pass slowed
        // by the rounds before the gate (a loaded host) is not a guest that writes too fast, and a grown
        // budget let QEMU stop the VM mid-pass (measured: 12k pages in the pause at load 15).
        const since = t.gates.length ? t.gateOpenedAt : t.startedAt;
        const ms = since === undefined ? downtime : downtimeBudget(downtime, Date.now() - since);
        if (!t.parser.completing) qmp.execute('migrate-set-parameters', { 'downtime-limit': ms }).catch(() => undefined);
      }, 5000);
      t.budgetTimer.unref();
    } catch (e) {
      await t.close();
      throw e;
    }
    return t;
  }

  /** QEMU stopped the VM and is sending its last pages and the device state. */
  get completing(): boolean { return this.parser.completing; }
  /**
   * QEMU stopped the VM (its STOP event, or its last pass began): from here the socket is never
   * paused and no live round should start, since either would wait inside the downtime.
   */
  get vmStopped(): boolean { return this.stoppedAt !== undefined || this.timeline.finalPass !== undefined; }
  /** Unsent pages that differ from the destination's copy. */
  get pendingPages(): number { return this.pending.size; }
  /** QEMU's first pass is held at a gate (start()'s gateAt or lateGateAt) until openGate(). */
  get gateHeld(): boolean { return this.gate?.state === 'held'; }
  /** Which gate holds it: 0 the first (gateAt), 1 the late one. */
  get heldGate(): number | undefined { return this.gateHeld ? this.gateNo : undefined; }

  /**
   * Pauses the socket at `pages` unsent pages from now on (default: CLOUDLET_HANDOFF_PENDING_PAGES):
   * the sender raises it while a round that cannot be followed yet (round 0) is on its way.
   */
  holdBackAt(pages = pendingLimit()): void {
    this.pendingLimitNow = Math.max(1, pages);
    if (this.pending.size < this.pendingLimitNow && !this.gateHeld) this.sock?.resume();
    this.wake();
  }

  /** Lets QEMU's first pass go on past the gate that holds it (once the pages found before it were sent), up to the next one. */
  openGate(): void {
    const g = this.gate;
    if (!g || g.state === 'armed') return;
    g.state = 'open';
    this.gateNo++;
    this.gateOpenedAt ??= Date.now();
    if (this.pending.size < this.pendingMax || this.vmStopped) this.sock?.resume();
  }

  /** Resolves when at least `pages` differing pages wait, the VM stopped, the tracker failed, or after `ms`. */
  async wait(pages: number, ms: number): Promise<void> {
    const ready = () => this.pending.size >= pages || this.gateHeld || this.vmStopped || this.failure;
    if (ready()) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      const check = () => { if (ready()) done(); else this.waiters.push(check); };
      function done() { clearTimeout(t); resolve(); }
      this.waiters.push(check);
    });
  }

  /** Resolves once the whole stream arrived and QEMU said the migration completed. */
  async ended(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(this.streamEnded && this.qemuStatus === 'completed')) {
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) throw new CloudletError('Timeout', `the tracking migration did not complete within ${timeoutMs} ms (QEMU: ${this.qemuStatus}, stream ${this.streamEnded ? 'ended' : 'open'})`);
      await new Promise<void>((r) => { const t = setTimeout(r, 200); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
    // The device state sent was taken before the stream's end: nothing may have followed it.
    if (this.stateTail !== undefined && this.parser.tailBytes !== this.stateTail) {
      throw new CloudletError('Internal', `the tracking migration stream went on after its VM description (${this.parser.tailBytes} bytes after the RAM, ${this.stateTail} when the device state was taken)`);
    }
  }

  /**
   * Resolves once the device state is all here: the stream's last item arrived (the parser sees
   * the VM description end it) or the stream ended; before QEMU closes the socket. The final round
   * can go then; ended() must still resolve before the destination runs the VM.
   */
  async stateReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.parser.tailComplete && !this.streamEnded) {
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) throw new CloudletError('Timeout', `the tracking migration's device state did not arrive within ${timeoutMs} ms (QEMU: ${this.qemuStatus})`);
      await new Promise<void>((r) => { const t = setTimeout(r, 200); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
    this.stateAt ??= Date.now();
  }

  /** QEMU's own figures for the tracking migration (after ended()), into the timeline. */
  async qemuFigures(): Promise<void> {
    const m = await this.qmp.execute('query-migrate').catch(() => undefined);
    if (!m || m.status !== 'completed') return;
    this.timeline.qemuDowntimeMs = Number(m.downtime);
    this.timeline.qemuTotalMs = Number(m['total-time']);
    this.timeline.qemuSyncs = Number(m.ram?.['dirty-sync-count']);
  }

  /**
   * The pages to send now, each recorded as sent in the shadow copy (ascending order). A page that
   * changed back to what the destination holds is no longer pending (dropped on arrival).
   */
  take(): TakenPage[] {
    const out: TakenPage[] = [];
    for (const index of [...this.pending.keys()].sort((a, b) => a - b)) {
      const p = this.pending.get(index)!;
      const data = p.data ?? ZERO_PAGE;
      const digest = this.shadow.check(index, data, p.digest);
      if (digest) out.push({ index, data, digest });
    }
    this.pending.clear();
    if (!this.gateHeld) this.sock?.resume();
    return out;
  }

  /**
   * The device-state stream for the destination (x-ignore-shared format), once stateReady() resolved.
   * With `base` (the base's saved state, which the destination also holds) and a stream that can
   * continue it (same QEMU, machine and RAM blocks): only what follows the base's prefix
   * (stateAfterSaved: the other blocks' pages that differ from the base's, and the devices);
   * `afterBase` says which.
   */
  deviceState(base?: SavedState): { data: Buffer; afterBase: boolean } {
    this.stateTail = this.parser.tailBytes;
    if (base && continuesSavedState(this.parser, base)) return { data: stateAfterSaved(this.parser, SHARED_BLOCK, this.otherBlocks, base), afterBase: true };
    return { data: buildIgnoreSharedState(this.parser, SHARED_BLOCK, this.otherBlocks), afterBase: false };
  }

  /** Stops the migration if it still runs (the VM keeps running) and waits until QEMU let go of it. */
  async cancel(): Promise<void> {
    if (this.qemuStatus === 'completed' || this.qemuStatus === 'cancelled' || this.qemuStatus === 'failed') return;
    await this.qmp.execute('migrate_cancel').catch(() => undefined);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const m = await this.qmp.execute('query-migrate').catch(() => undefined);
      if (!m || m.status === 'cancelled' || m.status === 'failed' || m.status === 'completed' || m.status === 'none') return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async close(): Promise<void> {
    if (this.budgetTimer) clearInterval(this.budgetTimer);
    this.qmp.off('event', this.onEvent);
    this.sock?.destroy();
    this.server.close();
    fs.rmSync(this.socket, { force: true });
    this.pending.clear();
    this.otherBlocks.clear();
  }

  private attach(s: net.Socket): void {
    this.sock = s;
    this.server.close();
    s.on('data', (d: Buffer) => {
      if (this.failure) return;
      try {
        this.parser.push(d);
      } catch (e) {
        this.fail(e as Error);
        return;
      }
      if ((this.pending.size >= this.pendingMax || this.gateHeld) && !this.vmStopped) s.pause();
      this.wake();
    });
    s.once('end', () => {
      this.timeline.streamEnd = Date.now();
      try { this.parser.end(); this.streamEnded = true; } catch (e) { this.fail(e as Error); }
      this.wake();
    });
    s.on('error', (e) => this.fail(new CloudletError('Internal', `tracking migration stream: ${describeError(e)}`)));
  }

  private onPage(block: string, offset: number, data: Buffer | undefined, final: boolean): void {
    if (final) this.timeline.finalPages++;
    if (block !== SHARED_BLOCK) {
      let m = this.otherBlocks.get(block);
      if (!m) this.otherBlocks.set(block, (m = new Map()));
      m.set(offset, data ? Buffer.from(data) : undefined);
      return;
    }
    const g = this.gate;
    if (g?.state === 'armed' && offset >= g.at) {
      g.state = 'held';
      if (this.gateNo === 0) this.timeline.gateHeld = Date.now(); else this.timeline.lateGateHeld = Date.now();
    }
    const index = offset / PAGE_SIZE;
    const digest = this.shadow.differing(index, data ?? ZERO_PAGE);
    if (!digest) {
      this.pending.delete(index);
      return;
    }
    if (final) this.timeline.finalDiffering++;
    this.pending.set(index, { data: data ? Buffer.from(data) : undefined, digest });
  }

  private fail(e: Error): void {
    if (this.failure || (this.streamEnded && this.qemuStatus === 'completed')) return;
    this.failure = e;
    this.sock?.destroy();
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
