/**
 * The source of a handoff. Checks that the destination holds the base (begin) before touching the
 * VM; while the VM runs, sends what differs from the destination's copy (round 0: everything that
 * differs from the base, i.e. the overlay of the current state), then rounds of what changed since,
 * until a round is small or MAX_ROUNDS; then pauses and saves the device state, sends the last
 * changes with it, and asks the destination to resume. Any failure before the destination reports
 * the VM running drops the destination's session and resumes the VM here; once finish was sent,
 * the VM is resumed here only after the destination said it does not run it there.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError, describeError, throwIfCancelled } from '../common/errors';
import type { ProgressSink } from '../common/progress';
import type { SandboxInfo, SandboxManager } from '../sandboxes/sandboxManager';
import { DEFAULT_LEVEL, mergeAscending } from '../overlay/overlayWriter';
import { CHUNK_SIZE, type Target } from '../overlay/format';
import { decodeLaunchRound, launchRoundFor, readLaunchRound, type LaunchRound } from './launchRound';
import { readLaunchDigestsAsync, type LaunchDigests } from './launchDigests';
import { readWhole } from '../common/readWhole';
import { watchRequestSent } from './requestSent';
import { cancelLaunchDigests, launchDigestsEnabled } from '../sandboxes/launchDigestsJob';
import type { SegmentCompressor } from '../overlay/segmentCompressor';
import { DestinationClient, NotDelivered } from './destinationClient';
import { DirtyPageTracker, PageBytesNotKept, ShadowPageTracker } from './dirtyPageTracker';
import { LayerTracker } from './layerTracker';
import { RoundEncoder } from './roundEncoder';
import { encodeRoundBody, encodeRoundParts, fileSha256, readAgreedBaseState, stateAfterBaseEnabled, verifyRamEnabled, type FinishResponse } from './protocol';
import { enableDeviceStateMigration, saveDeviceStateToBuffer } from '../qemu/deviceState';
import type { HandoffReport } from '../client/types';
import type { TlsTrust } from '../client/transport';
import { failpoint } from '../common/failpoint';
import { envNumber } from '../common/env';
import { MigrationTracker } from './migrationTracker';
import type { SavedState } from '../qemu/migrationStream';
import { DiskDirtyLog } from './diskDirtyLog';
import { InlineZstd } from './inlineZstd';
import { createLogger } from '../common/log';
import { eventTimeMs, type QmpClient, type QmpEvent } from '../qemu/qmp';

const log = createLogger('handoff');

/** Rounds while the VM runs, at most. */
export const MAX_ROUNDS = 5;
/** A running round that changed at most this many chunks ends the iteration (1 MiB). */
export const SMALL_ROUND_CHUNKS = 256;
/** With the migration tracker, live rounds read the disk layer at most this often (ms). */
export const LIVE_DISK_SCAN_MS = 5000;
/** zstd level of the paused round: few pages, and every millisecond is downtime. */
export const FINAL_LEVEL = 1;
/**
 * Worker threads that compare RAM with the copy of what the destination holds (ParallelPageCompare);
 * 0 = compare in the daemon's own thread (the default, and the fallback when workers fail). Set
 * CLOUDLET_HANDOFF_COMPARE_WORKERS=N for the source daemon to use N workers. Default 0 because on
 * the 2 shared cores measured here (bench/RESULTS.md, handoff) 2 workers did not shorten the paused
 * compare inside the daemon (median 42 ms vs 41 ms in-thread), although alone they nearly halve it (15-18
 * vs 30 ms): the paused compare competes with QEMU's device-state save and everything else running.
 */
export function compareWorkers(): number {
  return Math.max(0, Math.min(8, Math.floor(envNumber('CLOUDLET_HANDOFF_COMPARE_WORKERS', 0))));
}

export interface SenderOptions {
  vmId: string;
  serverId: string;
  server: { name: string; flavorId: string; metadata: Record<string, string> };
  handoffUrl: string;
  destToken: string;
  destVmName: string;
  /** How to verify the destination's certificate. */
  destTrust?: TlsTrust;
  progress: ProgressSink;
  signal?: AbortSignal;
  /** Called once the destination opened the session (before the VM is touched): the source records it to ask after a restart. */
  onSession?: (sid: string) => void;
}

export type TrackingMethod = 'qemu-migration' | 'full-compare';

/**
 * After a launch round, QEMU's first pass replaces the compare round (held at a gate near its end,
 * MigrationTracker.start's gateAt); CLOUDLET_HANDOFF_FIRST_PASS_GATE=0: the compare round as before.
 */
export function firstPassGateEnabled(): boolean { return process.env.CLOUDLET_HANDOFF_FIRST_PASS_GATE !== '0'; }

/**
 * Stream bytes QEMU's first pass must still have to send at the gate: far more than the socket's
 * buffers hold (~210 KB here: net.core.wmem_default), so QEMU cannot finish the pass (and stop the
 * VM) while it is held.
 */
export const GATE_STREAM_BYTES = 2 << 20;

/**
 * Stream bytes after the late gate (MigrationTracker.start's lateGateAt): the pages QEMU's first pass
 * finds past it go in the pause, those between the two gates in a live round (on the Debian guest the
 * 2 MiB after the first gate held ~680 differing pages, nearly all of the paused round's ~760).
 * Above the ~300 KB the socket, QEMU's buffer and one read hold, so that QEMU normally cannot end its
 * pass while held there; CLOUDLET_HANDOFF_LATE_GATE_BYTES (0: no late gate).
 */
export function lateGateBytes(): number { return envNumber('CLOUDLET_HANDOFF_LATE_GATE_BYTES', 512 << 10, 0); }

/**
 * Below this rate (MB/s) of round 0, from its first bytes written to the destination's answer, the link
 * is slow and the late gate may be passed without a round: its pages then go in the pause, where they cost
 * the same wire time, and the round's own cost (a request, its apply, QEMU held meanwhile: ~0.1-0.3 s
 * measured at 25 Mbit/s, within the noise) is saved from the total, but the pause grows (267-322 vs
 * 107-130 ms there). Off by default (review 13 F4: a certain cost in downtime for an uncertain gain);
 * CLOUDLET_HANDOFF_SLOW_LINK_MB_S=4 turns it on for a 25 Mbit/s link.
 */
export function slowLinkMBps(): number { return envNumber('CLOUDLET_HANDOFF_SLOW_LINK_MB_S', 0, 0); }

/**
 * A round 0 smaller than this says nothing of the link: its time is mostly the destination's preparation
 * and apply (review 13 F2: the test guest's 133 KB round 0 answered in 0.7-2.1 s on loopback).
 */
export const SLOW_LINK_MIN_ROUND0_BYTES = 8e6;

/** Whether round 0 (`bytes` in `ms`, first bytes written to answered) went slower than `minMBps`. */
export function slowLink(bytes: number, ms: number | undefined, minMBps = slowLinkMBps()): boolean {
  return ms !== undefined && ms > 0 && minMBps > 0 && bytes >= SLOW_LINK_MIN_ROUND0_BYTES && bytes / 1e3 / ms < minMBps;
}

/** Unsent pages QEMU's first pass may find before it is held, while round 0 is on its way (64 MiB). */
export const ROUND0_PENDING_PAGES = 16384;

/**
 * The gate's byte offset in the shared RAM block: the highest page with at least `bytes` of QEMU's
 * first-pass stream after it, predicted from what the destination holds (`shadow`; the running RAM
 * is nearly that): a zero page is 9 bytes of stream, any other ~4 KiB. 0 when the whole RAM predicts less.
 */
export function firstPassGate(shadow: { zero(index: number): boolean }, pages: number, bytes = GATE_STREAM_BYTES): number {
  let stream = 0;
  for (let i = pages - 1; i > 0; i--) {
    stream += shadow.zero(i) ? 9 : CHUNK_SIZE + 8;
    if (stream >= bytes) return i * CHUNK_SIZE;
  }
  return 0;
}

/**
 * After a launch round, the source's copy of what the destination holds is one SHA-256 per RAM page
 * (default); CLOUDLET_HANDOFF_DIGEST_COPY=0: a byte copy of the whole RAM (ShadowPageTracker), as before.
 */
export function digestCopyEnabled(): boolean { return process.env.CLOUDLET_HANDOFF_DIGEST_COPY !== '0'; }

/** Round 0 from the VM's launch overlay when it kept one (default); CLOUDLET_HANDOFF_LAUNCH_OVERLAY=0: by compare. */
export function launchOverlayEnabled(): boolean { return process.env.CLOUDLET_HANDOFF_LAUNCH_OVERLAY !== '0'; }

/** Reads chunks of the base images (what the destination starts from); past the end reads zeros. */
class BaseChunks {
  private readonly fds: Record<Target, number>;
  constructor(base: { ram: string; disk: string }) {
    const ram = fs.openSync(base.ram, 'r');
    try { this.fds = { ram, disk: fs.openSync(base.disk, 'r') }; } catch (e) { fs.closeSync(ram); throw e; }
  }

  read(target: Target, index: number, out: Buffer): Buffer {
    out.fill(0);
    fs.readSync(this.fds[target], out, 0, CHUNK_SIZE, index * CHUNK_SIZE);
    return out;
  }

  close(): void { for (const fd of Object.values(this.fds)) fs.closeSync(fd); }
}

/**
 * How the source finds the pages written since the last round: 'migration' (default: QEMU's own
 * live migration into a local socket, MigrationTracker) or 'compare' (compare the whole RAM file
 * with the copy of what the destination holds; also the fallback). CLOUDLET_HANDOFF_TRACKER.
 */
export function trackerChoice(): 'migration' | 'compare' {
  return process.env.CLOUDLET_HANDOFF_TRACKER === 'compare' ? 'compare' : 'migration';
}

/** How long a source keeps asking a destination that did not answer finish (CLOUDLET_HANDOFF_CONFIRM_MS, default 2 min). */
function confirmMs(): number {
  return envNumber('CLOUDLET_HANDOFF_CONFIRM_MS', 120_000, 0);
}

/** finish was sent and the destination never said whether the VM runs there. */
class OutcomeUnknown extends Error {}

export class HandoffSender {
  private readonly phases: Record<string, number> = {};
  /** When run() began: the at_* phases are ms since then (a timeline of the parts that overlap). */
  private startedAt = Date.now();
  private readonly roundBytes: number[] = [];
  private readonly roundPages: number[] = [];
  private readonly roundDisk: number[] = [];
  private tracking: { method: TrackingMethod; fallback?: string } = { method: 'qemu-migration' };
  /** A round sent and not yet answered (the launch round, while the next one is prepared). */
  private inFlight?: Promise<void>;
  /** The launch overlay read (xz units allowed) while begin went to the destination and back. */
  private launchRead?: Promise<LaunchRound | { unusable: string }>;
  /** The base's digest lists (RAM, disk), read while begin travelled. */
  private baseDigests?: Promise<Record<Target, Buffer>>;
  /** Round 0 (sent ahead, launch overlay) was answered by the destination. */
  private launchApplied = false;
  /** ms from round 0's first bytes written to the destination's answer (a launch round only). */
  private round0WireMs?: number;
  /** Whether round 0 was the VM's launch overlay (launchRound.ts), or why not. */
  private launchOverlay: { used: true; overlayId: string } | { used: false; reason: string } = { used: false, reason: 'not tried' };
  /** The destination takes a final device state that continues the base's (protocol feature state-after-base). */
  private stateAfterBase = false;
  /** The SHA-256 of the base state.bin both sides hold (state-after-base), once agreed at begin. */
  private baseStateSha: string | undefined;
  /** The destination decodes rounds of xz units (feature xz-units): a wire-profile launch overlay can be round 0. */
  private xzUnits = false;
  /** Why the paused disk scan reads the whole layer (QEMU's dirty bitmap unusable), if it does. */
  private diskFallback?: string;

  constructor(private readonly manager: SandboxManager, private readonly compressor: SegmentCompressor, private readonly o: SenderOptions) {}

  async run(): Promise<HandoffReport & { destination_ports: Record<string, string> }> {
    const { manager, o } = this;
    const t0 = Date.now();
    this.startedAt = t0;
    const info = manager.get(o.vmId);
    if (info.status !== 'running') throw new CloudletError('Conflict', `VM ${o.vmId} is ${info.status}, not running`);
    const { vmConfig } = manager.layout(o.vmId);
    const dest = new DestinationClient(o.handoffUrl, o.destToken, o.signal, o.destTrust);

    o.progress({ phase: 'check', message: `asking ${dest.where} whether it holds base ${info.baseId.slice(0, 12)}` });
    const beginSent = watchRequestSent();
    const begun = dest.begin({
      name: o.destVmName, base_id: info.baseId, vm_config: vmConfig as unknown as Record<string, unknown> & { ramBytes: number },
      ports: info.ports.map((p) => p.guest), flavor_id: o.server.flavorId, metadata: o.server.metadata,
    }, beginSent);
    // What round 0 and the rounds after it need, read while begin goes and comes back (the source has
    // nothing else to do then), but only once begin's request is written: fetch needs turns of the
    // event loop to connect and write, and round 0's read and check (~0.15-0.25 s for the Debian
    // guest's 29 MB) has synchronous parts that would hold begin's first byte back.
    const prep = beginSent.sent.then(() => {
      this.mark('at_begin_sent');
      return this.prepare(info.baseId, vmConfig.ramBytes);
    });
    this.launchRead = prep.then((p) => p.launch);
    this.baseDigests = prep.then((p) => p.baseDigests);
    // Surfaced where they are awaited (not reached if begin fails).
    for (const p of [this.launchRead, this.baseDigests]) p.catch(() => undefined);
    const { id: sid, heartbeatMs, features, baseStateSha256 } = await begun.catch((e) => {
      throw new CloudletError(e instanceof CloudletError ? e.code : 'Internal', `handoff to ${dest.where} refused before the VM was touched: ${describeError(e)}; the VM kept running at the source`);
    });
    this.lap('check', t0);
    o.onSession?.(sid);
    // Heartbeats from here to the end: a destination ends a session whose source went silent.
    const beat = keepAlive(dest, sid, heartbeatMs);
    try {
      // The base's saved state is continued only when the destination's state.bin is this one's (same hash).
      const ownState = manager.bases.get(info.baseId).manifest.files['state.bin']?.sha256;
      if (features.includes('state-after-base') && stateAfterBaseEnabled()) {
        if (baseStateSha256 && baseStateSha256 === ownState) this.baseStateSha = ownState;
        else log.warn(`handoff of ${o.vmId}: the whole device state goes in the final round: ${dest.where}'s state.bin of base ${info.baseId.slice(0, 12)} is ${baseStateSha256?.slice(0, 12) ?? 'not named'}, here ${ownState?.slice(0, 12) ?? 'none'}`);
      }
      this.stateAfterBase = this.baseStateSha !== undefined;
      this.xzUnits = features.includes('xz-units');
      return await this.move(dest, sid, info, t0, features.includes('final-finish'));
    } finally {
      beat.stop();
    }
  }

  /**
   * Rounds, pause, final round, finish: the handoff once the destination holds a session.
   * `finalFinish`: the destination takes finish with the final round (else: round, then finish).
   */
  private async move(dest: DestinationClient, sid: string, info: SandboxInfo, t0: number, finalFinish: boolean): Promise<HandoffReport & { destination_ports: Record<string, string> }> {
    const { manager, o } = this;
    const { files, vmConfig } = manager.layout(o.vmId);
    const base = manager.bases.get(info.baseId);
    let ram: ShadowPageTracker | DirtyPageTracker | undefined;
    const ramFile = files.ram, diskLayer = files.disk;
    // Opened once round 0 is on its way (closed at the end).
    let encoder: RoundEncoder | undefined, baseFd: number | undefined;
    let round = 0, paused = false, tPause = 0;
    let tracker: MigrationTracker | undefined;
    let diskLog: DiskDirtyLog | undefined;
    let qmp: QmpClient | undefined;
    let askedBitmap: Promise<number[] | undefined> | undefined;
    // The guest's pause begins at QEMU's STOP event (its own clock), whichever path stops the VM.
    let stopEventAt: number | undefined;
    const onStop = (e: QmpEvent) => { if (e.event === 'STOP') stopEventAt ??= eventTimeMs(e); };
    try {
      // Test hook: the source stops here (to be killed) with the destination's session open.
      await failpoint('handoff-after-check');
      // Round 0 from the overlay the VM was made from, when it kept one (launchRound.ts): on its way
      // while the copy of the base RAM is read and the round decoded into it.
      const launch = await this.startLaunchRound(dest, sid, info.baseId, vmConfig.ramBytes);
      const { ram: ramDigests, disk: diskDigests } = await (this.baseDigests ?? readBaseDigests(base));
      const enc = new RoundEncoder({ ramFile: base.ram, diskFile: base.disk, ramDigests, diskDigests }, this.compressor, DEFAULT_LEVEL);
      encoder = enc;
      const baseDiskFd = fs.openSync(base.disk, 'r');
      baseFd = baseDiskFd;
      let disk = new LayerTracker(diskLayer, baseDiskFd, diskDigests);
      const tShadow = Date.now();
      const pages = vmConfig.ramBytes / CHUNK_SIZE;
      if (launch && firstPassGateEnabled() && trackerChoice() !== 'compare' && digestCopyEnabled()) {
        // Round 0 then QEMU's first pass as the compare: what the destination holds is kept as one
        // SHA-256 per page from the base's list (DirtyPageTracker: no 1 GiB buffer, no base RAM read).
        // Kept since synthesis (launchDigests.ts): round 0 is not decoded here at all.
        const kept = await this.keptLaunchDigests(files.launchDigests, launch, info.baseId, pages, base.disk);
        ram = new DirtyPageTracker(kept?.ram ?? ramDigests, pages);
        try {
          if (kept) round = this.holdKeptDigests(kept, disk);
          else round = await this.decodeLaunchRound(launch, base, ram, disk, { ram: ramDigests, disk: diskDigests });
          this.phases.launch_round_digest_copy = 1;
        } catch (e) {
          if (!(e instanceof PageBytesNotKept)) throw e;
          // A disk chunk of round 0 copies a RAM page: its bytes are needed; decoded again into a byte copy.
          log.info(`handoff of ${o.vmId}: round 0 decoded again into a byte copy: ${e.message}`);
          disk = new LayerTracker(diskLayer, baseDiskFd, diskDigests);
          ram = undefined;
        }
      }
      if (!ram) {
        ram = new ShadowPageTracker(undefined, pages, { workers: compareWorkers() });
        // The copy of the base RAM is read (libuv's threads) while round 0 is decoded into it (this
        // thread): the read leaves out the pages the round writes, so the two never touch the same page.
        const shadow = ram;
        const loading = shadow.loadBase(base.ram, { digests: ramDigests, ...(launch ? { skip: launchRamPages(launch, pages) } : {}) })
          .then(() => this.lap('live_shadow_load', tShadow));
        loading.catch(() => undefined);
        if (launch) round = await this.decodeLaunchRound(launch, base, ram, disk);
        await loading;
      }
      // Live rounds. Tracking by QEMU's own migration (MigrationTracker) unless it is off or fails;
      // then (or with CLOUDLET_HANDOFF_TRACKER=compare) the full compare of the RAM file.
      const tLive = Date.now();
      qmp = await manager.qmpClient(o.vmId);
      qmp.on('event', onStop);
      // QEMU's block dirty bitmap from here, before the first scan of the layer: the paused scan then
      // reads only the chunks written since (else the whole layer, when its file changed).
      try {
        diskLog = await DiskDirtyLog.start(qmp, path.join(path.dirname(files.migrateSocket), 'disk-dirty.sock'));
      } catch (e) {
        this.diskFallback = `QEMU's block dirty bitmap could not be read: ${describeError(e)}`;
        log.warn(`handoff of ${o.vmId}: the paused disk scan reads the whole layer: ${this.diskFallback}`);
      }
      // Disk chunks of the first live round (the layer's changes since round 0 was made), scanned ahead
      // and kept aside (recorded as sent): a later scan into the same round may find some again.
      let firstDisk: DiskChunk[] | undefined;
      if (trackerChoice() === 'compare') this.tracking = { method: 'full-compare', fallback: 'CLOUDLET_HANDOFF_TRACKER=compare' };
      else if (launch && firstPassGateEnabled()) {
        // Round 0 was the launch overlay: QEMU's first pass is the compare. Held near its end (the
        // gate) until what it found so far (written since the launch) went out in a live round and
        // round 0 is applied at the destination, so neither waits inside the pause; no RAM read here.
        try {
          const gateAt = firstPassGate(ram, pages);
          const late = lateGateBytes();
          const lateGateAt = late > 0 && late < GATE_STREAM_BYTES ? firstPassGate(ram, pages, late) : undefined;
          this.phases.first_pass_gate_mib = Math.round(gateAt / (1 << 20));
          tracker = await MigrationTracker.start(qmp, path.join(path.dirname(files.migrateSocket), 'track.sock'), ram, { gateAt, lateGateAt });
          this.mark('at_first_pass_start');
          // The live rounds' index of the base's digests, a slice per turn while round 0 streams and QEMU's
          // first pass runs (seconds before the first live round); not before: its slices held back the
          // reads and QMP answers above (first pass started 0.4-0.9 s later on loopback). Without the
          // tracker, the first live round's prepare() builds it at once.
          enc.indexInBackground().catch((e: unknown) => log.warn(`handoff of ${o.vmId}: the base's index is built when the first live round needs it: ${describeError(e)}`));
        } catch (e) {
          this.fallBack(`QEMU's migration could not be started as the tracker: ${describeError(e)}`);
        }
        if (tracker) {
          // The layer's changes since the launch (QEMU's dirty bitmap only covers writes from now on),
          // read while QEMU's first pass runs; they go with the first live round.
          const tDisk = Date.now();
          firstDisk = await scanInto(disk, false);
          this.lap('first_round_disk_scan', tDisk);
        }
      } else {
        // Round 0 by one compare of the running VM's RAM (the overlay of its current state): QEMU's
        // first pass then finds nearly everything already at the destination, and what is left when
        // it stops the VM is only what was written since (measured on the test guest: without this
        // round the 674 changed pages went in the paused round, downtime 1.0-1.8 s at load 15-24).
        const tFirst = Date.now();
        enc.begin();
        const diskChanged = await this.scanDisk(disk, enc, false);
        this.lap('compare_round_disk_scan', tFirst);
        const tRam = Date.now();
        const ramChanged = await ram.scanFile(ramFile, (i, page, d) => enc.add('ram', i, page, d), o.signal);
        this.lap('compare_round_ram_scan', tRam);
        await this.send(dest, sid, round, false, enc, ramChanged, diskChanged, undefined, 'compare_round');
        this.lap('compare_round', tFirst);
        o.progress({ phase: 'round', done: round + 1, message: `round ${round}: ${ramChanged} RAM pages (compare), ${diskChanged} disk chunks, ${this.roundBytes[round]} bytes` });
        round++;
        try {
          tracker = await MigrationTracker.start(qmp, path.join(path.dirname(files.migrateSocket), 'track.sock'), ram);
        } catch (e) {
          this.fallBack(`QEMU's migration could not be started as the tracker: ${describeError(e)}`);
        }
      }
      // The base's saved state (the destination holds the same file), read while the VM runs.
      let savedBase: SavedState | undefined;
      if (tracker && this.stateAfterBase) {
        const tBase = Date.now();
        try {
          savedBase = readAgreedBaseState(base.state, this.baseStateSha!);
        } catch (e) {
          log.warn(`handoff of ${o.vmId}: the whole device state goes in the final round: the base's saved state could not be read: ${describeError(e)}`);
        }
        this.phases.saved_base_parse = Date.now() - tBase;
      }
      if (tracker) {
        const tTrack = Date.now();
        let lastDiskScan = Date.now();
        // Round 0 still on its way: a live round could only follow it, so QEMU's first pass is not held
        // at 1024 pages meanwhile but goes on to the gate (what it finds waits, up to 64 MiB): one round at
        // the gate once round 0 is applied, not a round then the rest of the pass (on a slow link).
        let raised = this.inFlight !== undefined && !this.launchApplied;
        if (raised) tracker.holdBackAt(ROUND0_PENDING_PAGES);
        for (;;) {
          throwIfCancelled(o.signal);
          if (raised && this.launchApplied) { tracker.holdBackAt(); raised = false; }
          // A live round only when QEMU is held back (PENDING_PAGES unsent, or its first pass at the
          // gate): a round still in flight when QEMU stops the VM adds its whole duration to the
          // downtime (measured: 0.3-1.5 s per round at load 15-24), so a quiet guest's few changed
          // pages wait for the final round.
          await tracker.wait(tracker.pendingMax, 1000);
          if (tracker.failure) break;
          // Stopped: the last pass is coming; a round now would wait inside the downtime.
          if (tracker.vmStopped) break;
          const atGate = tracker.gateHeld;
          const lateGate = tracker.heldGate === 1;
          if (lateGate && slowLink(this.roundBytes[0] ?? 0, this.round0WireMs)) {
            // A slow link: what the pass found since the first gate waits for the pause (see slowLinkMBps).
            this.phases.late_gate_skipped = 1;
            this.mark('at_late_gate_open');
            tracker.openGate();
            continue;
          }
          if (!atGate && tracker.pendingPages < tracker.pendingMax) continue;
          if (atGate && !tracker.pendingPages && !firstDisk?.length) {
            // Nothing found before the gate: round 0 applied is all QEMU has to wait for.
            const tWait = Date.now();
            await this.roundBefore();
            if (!lateGate) this.phases.first_pass_gate_wait = Date.now() - tWait;
            this.mark(lateGate ? 'at_late_gate_open' : 'at_first_pass_gate_open');
            tracker.openGate();
            continue;
          }
          let diskChanged = 0;
          enc.begin();
          if (firstDisk !== undefined) { diskChanged = await addDisk(enc, firstDisk); firstDisk = undefined; } else {
            // The disk layer at most every LIVE_DISK_SCAN_MS here: a guest that writes its disk all the
            // time (the Debian guest's journal) would have its whole layer re-read in every round; the
            // final scan, VM paused, finds everything anyway.
            if (Date.now() - lastDiskScan >= LIVE_DISK_SCAN_MS) { lastDiskScan = Date.now(); diskChanged = await this.scanDisk(disk, enc, false); }
          }
          const pages = tracker.take();
          for (const p of pages) await enc.add('ram', p.index, p.data, p.digest);
          const tSend = Date.now();
          await this.send(dest, sid, round, false, enc, pages.length, diskChanged);
          if (atGate) {
            this.phases[lateGate ? 'late_gate_round' : 'first_pass_gate_round'] = Date.now() - tSend;
            tracker.openGate();
            this.mark(lateGate ? 'at_late_gate_open' : 'at_first_pass_gate_open');
          }
          o.progress({ phase: 'round', done: round + 1, message: `round ${round}: ${pages.length} RAM pages (QEMU's dirty log${atGate ? `, its first pass${lateGate ? ' near its end' : ''}` : ''}), ${diskChanged} disk chunks, ${this.roundBytes[round]} bytes` });
          round++;
        }
        this.lap('live_tracking', tTrack); // QEMU's passes until it stopped the VM, with the live rounds
        // 0: QEMU stopped the VM before its first pass reached the gate (its budget x its bandwidth
        // covered the rest of the pass): pages written since the launch past that point go in the pause.
        if (this.phases.first_pass_gate_mib !== undefined) this.phases.first_pass_gate_reached = tracker.timeline.gateHeld !== undefined ? 1 : 0;
        if (tracker.timeline.lateGateHeld !== undefined) this.phases.at_late_gate_held = Math.round(tracker.timeline.lateGateHeld - this.startedAt);
        if (tracker.failure && tracker.stoppedAt === undefined) {
          // The VM never stopped: cancel QEMU's migration (the VM runs on) and compare instead.
          const why = describeError(tracker.failure);
          await tracker.cancel();
          await tracker.close();
          tracker = undefined;
          this.fallBack(`QEMU's migration stream could not be used: ${why}`);
        } else if (tracker.failure) throw tracker.failure;
      }
      if (!tracker) {
        await enableDeviceStateMigration(qmp);
        for (;;) {
          throwIfCancelled(o.signal);
          // Chunks scanned ahead for a first live round that never went (recorded as sent) go in this one,
          // as the scan now finds them if they changed again (one record per chunk, ascending).
          enc.begin();
          const diskChanged = await addDisk(enc, mergeChunks(firstDisk ?? [], await scanInto(disk, false)));
          firstDisk = undefined;
          const ramChanged = await ram.scanFile(ramFile, (i, page, d) => enc.add('ram', i, page, d), o.signal);
          await this.send(dest, sid, round, false, enc, ramChanged, diskChanged);
          o.progress({ phase: 'round', done: round + 1, total: MAX_ROUNDS, message: `round ${round}: ${ramChanged} RAM pages (full compare), ${diskChanged} disk chunks, ${this.roundBytes[round]} bytes` });
          round++;
          if (ramChanged + diskChanged <= SMALL_ROUND_CHUNKS || round >= MAX_ROUNDS) break;
        }
      }
      this.lap('live_rounds', tLive);
      enc.prepare();

      let ramChanged: number;
      let deviceState: Buffer;
      let afterBase = false;
      if (tracker) {
        // QEMU stopped the VM by itself (its downtime budget) and sent its last pages; the device
        // state follows in the same stream.
        paused = true;
        tPause = tracker.stoppedAt ?? Date.now();
        this.phases.at_stop = Math.round(tPause - this.startedAt);
        if (tracker.timeline.gateHeld !== undefined) this.phases.at_first_pass_gate_held = Math.round(tracker.timeline.gateHeld - this.startedAt);
        o.progress({ phase: 'pause', message: 'QEMU paused the VM; its last pages and device state arrive' });
        // The device state is taken once its last item arrived, before QEMU closes the socket (its
        // main loop does that 20-130 ms later under load); ended() is awaited before finish.
        await tracker.stateReady(60_000);
        // Split at QEMU's last page: its last pass (tracking), then the rest of its stream.
        const lastPage = tracker.timeline.completing ?? Date.now();
        this.phases.pause_final_pages = Math.max(0, Math.round(lastPage - tPause));
        this.phases.pause_device_state = Math.max(0, Math.round(Date.now() - lastPage));
        // The record says paused (QEMU stopped the VM by itself: no QMP `stop`, which would wait for
        // QEMU's main loop, busy until after the stream's end: up to 24 ms of the pause at load 5).
        // QEMU answers NBD only then too: the disk bitmap is asked now and awaited once the pages are
        // encoded, which needs nothing of QEMU.
        const tRecord = Date.now();
        manager.markPaused(o.vmId);
        this.phases.pause_record = Date.now() - tRecord;
        askedBitmap = diskLog ? this.writtenChunks(diskLog) : undefined;
        askedBitmap?.catch(() => undefined);
        const tScan = Date.now();
        ({ data: deviceState, afterBase } = tracker.deviceState(savedBase));
        this.phases.pause_state_build = Date.now() - tScan;
        this.phases.final_device_state_bytes = deviceState.length;
        this.phases.final_state_after_base = afterBase ? 1 : 0;
        enc.begin(); // chunks scanned ahead for a live round that never went join the final one below
        enc.level = FINAL_LEVEL;
        enc.compressor = new InlineZstd();
        const pages = tracker.take();
        for (const p of pages) await enc.add('ram', p.index, p.data, p.digest);
        ramChanged = pages.length;
        this.lap('pause_tracking', tScan);
      } else {
        // Stop and copy: pause; the device state streams into memory while the paused RAM is compared
        // with what the destination holds; the disk layer is read once the save has flushed it.
        tPause = Date.now();
        paused = true;
        o.progress({ phase: 'pause', message: 'pausing the VM; saving its device state while comparing its RAM' });
        await manager.pause(o.vmId);
        this.lap('pause', tPause);
        const tScan = Date.now();
        const saving = saveDeviceStateToBuffer(qmp, { socket: files.migrateSocket, capabilitiesSet: true, timeoutMs: 60_000 }).then((s) => s.data);
        saving.catch(() => undefined);
        enc.begin(); // chunks scanned ahead for a live round that never went join the final one below
        enc.level = FINAL_LEVEL;
        enc.compressor = new InlineZstd();
        ramChanged = await ram.scanFile(ramFile, (i, page, d) => enc.add('ram', i, page, d));
        this.lap('final_ram_compare', tScan);
        // How the paused compare ran: on N worker threads, or 0 = in the daemon's thread (fallback).
        this.phases.final_ram_compare_workers = ram.lastScan.method === 'workers' ? compareWorkers() : 0;
        if (ram.lastScan.fallbackReason) o.progress({ phase: 'round', message: `RAM compared in-thread: ${ram.lastScan.fallbackReason}` });
        deviceState = await saving;
        this.lap('final_ram_compare_and_device_state', tScan);
      }
      const tDisk = Date.now();
      let pausedDisk: DiskChunk[];
      const written = await (askedBitmap ?? (diskLog ? this.writtenChunks(diskLog) : undefined));
      if (written) {
        // The bitmap holds the writes since it was added; a write made before whose qcow2 mapping QEMU
        // had not flushed yet was invisible to the live scans: its entry changed since the last scan.
        const remapped = disk.remappedChunks();
        pausedDisk = [];
        await disk.scanChunks(mergeAscending(written, remapped), async (index, data, digest) => { pausedDisk.push({ index, data, digest }); });
        this.phases.final_disk_written_chunks = written.length; // read in the pause (QEMU's dirty bitmap)
        this.phases.final_disk_remapped_chunks = remapped.length;
      } else {
        pausedDisk = await scanInto(disk, true);
        if (disk.lastSkipped) this.phases.final_disk_scan_skipped = 1; // the layer was not written since the last scan
      }
      const diskChanged = await addDisk(enc, mergeChunks(firstDisk ?? [], pausedDisk));
      firstDisk = undefined;
      this.lap('final_disk_scan', tDisk);
      const tEncode = Date.now();
      const body = await this.encodeRound(round, true, enc, ramChanged, diskChanged, deviceState, finalFinish, afterBase);
      this.lap('final_encode', tEncode);
      o.progress({ phase: 'round', done: round + 1, message: `final round ${round}: ${ramChanged} RAM pages, ${diskChanged} disk chunks, ${body.length} bytes with the device state` });
      if (tracker) {
        // The destination resumes the VM in the same request as the final round: QEMU must first
        // have completed the migration, with nothing in the stream after the state sent.
        const tWait = Date.now();
        await tracker.ended(60_000);
        this.lap('pause_stream_end_wait', tWait);
      }
      const sourceRam = verifyRamEnabled() ? fileSha256(ramFile) : undefined;
      await this.roundBefore(); // answered long before: the compare round waited for it
      const tSend = Date.now();
      o.progress({ phase: 'resume', message: `${dest.where} applies the final round and resumes the VM` });
      // One request: the final round, then finish (no second round trip in the downtime).
      const keepPhases = (p: Record<string, number> | undefined) => { for (const [k, v] of Object.entries(p ?? {})) if (Number.isFinite(v)) this.phases[`destination_final_${k}`] = v; };
      // A destination of an earlier release: the final round (a failure here resumes the VM at the source), then finish.
      if (!finalFinish) keepPhases((await dest.round(sid, round, body)).phases_ms);
      const fin: FinishResponse = await this.finishAndConfirm(dest, sid, async () => {
        if (!finalFinish) return dest.finish(sid);
        const answer = await dest.finalRoundAndFinish(sid, round, body);
        keepPhases(answer.phases_ms);
        return answer.finish;
      });
      if (!finalFinish) this.phases.final_finish_separate = 1;
      const tRunning = Date.now();
      this.lap('final_send_apply_resume', tSend);
      round++;
      for (const [k, v] of Object.entries(fin.phases_ms ?? {})) if (Number.isFinite(v)) this.phases[`destination_${k}`] = v;
      if (tracker) {
        await tracker.qemuFigures();
        this.timelinePhases(tracker, tPause);
      }
      // The guest's own pause: source QEMU's STOP -> destination QEMU's RESUME, both QEMU event stamps
      // (only comparable when both hosts' clocks agree, as on one host).
      const stoppedAt = tracker?.stoppedAt ?? stopEventAt;
      const resumedAt = typeof fin.resumed_at_ms === 'number' && Number.isFinite(fin.resumed_at_ms) ? Math.round(fin.resumed_at_ms) : undefined;
      const report = {
        server_id: o.serverId, destination_server_id: fin.server.id, destination: dest.where,
        total_ms: tRunning - t0, downtime_ms: Math.round(tRunning - tPause), bytes_sent: this.roundBytes.reduce((a, b) => a + b, 0),
        ...(stoppedAt !== undefined ? { stopped_at_ms: Math.round(stoppedAt) } : {}),
        ...(resumedAt !== undefined ? { resumed_at_ms: resumedAt } : {}),
        ...(stoppedAt !== undefined && resumedAt !== undefined ? { stop_to_resume_ms: resumedAt - Math.round(stoppedAt) } : {}),
        rounds: round, round_bytes: this.roundBytes, round_pages: this.roundPages, round_disk_chunks: this.roundDisk,
        tracking: this.tracking.method, ...(this.tracking.fallback ? { tracking_fallback: this.tracking.fallback } : {}),
        ...(this.launchOverlay.used ? { round0: 'launch-overlay' as const, round0_overlay_id: this.launchOverlay.overlayId }
          : { round0: 'compare' as const, round0_compare_reason: this.launchOverlay.reason }),
        disk_tracking: (diskLog && !this.diskFallback ? 'qemu-dirty-bitmap' : 'layer-scan') as 'qemu-dirty-bitmap' | 'layer-scan', ...(this.diskFallback ? { disk_tracking_fallback: this.diskFallback } : {}),
        phases_ms: this.phases, destination_ports: fin.server.ports,
        ...(sourceRam ? { ram_sha256: { source: sourceRam, destination: fin.ram_sha256 ?? 'not sent' } } : {}),
      };
      await dest.report(sid, { ...report, source: 'source-cloudlet', source_server_id: o.serverId })
        .catch((e) => o.progress({ phase: 'report', message: `the destination did not take the report: ${describeError(e)}` }));
      return report;
    } catch (e) {
      if (e instanceof OutcomeUnknown) {
        throw new CloudletError('Unavailable', `handoff to ${dest.where}: finish was sent but whether the VM runs there is unknown (${e.message}); `
          + `the VM was left paused at the source: unpause it only once the destination is known not to run it`);
      }
      // finishAndConfirm throws only once the destination said the VM does not run there.
      // A tracking migration still running is cancelled first (else QEMU could stop the VM later).
      await tracker?.cancel().catch(() => undefined);
      if (tracker?.stoppedAt !== undefined) paused = true;
      await dest.abort(sid);
      const back = paused ? await this.resumeHere(info.baseId).then(() => 'the VM was resumed at the source', (r) => `resuming it at the source failed too: ${describeError(r)}`)
        : 'the VM kept running at the source';
      const code = e instanceof CloudletError ? e.code : 'Internal';
      throw new CloudletError(code, `handoff to ${dest.where} failed in round ${round}${paused ? ' (after the pause)' : ''}: ${describeError(e)}; ${back}`);
    } finally {
      qmp?.off('event', onStop);
      await tracker?.close();
      await diskLog?.stop();
      encoder?.close();
      await this.inFlight?.catch(() => undefined);
      await ram?.close();
      if (baseFd !== undefined) fs.closeSync(baseFd);
    }
  }

  /** Disk chunks QEMU's dirty bitmap marks, or undefined (the layer is scanned instead) if it does not answer. */
  private writtenChunks(diskLog: DiskDirtyLog): Promise<number[] | undefined> {
    return diskLog.writtenChunks().catch((e: unknown) => {
      // The paused VM must not wait on a bitmap that does not answer: the whole layer is scanned instead.
      this.diskFallback = `QEMU's block dirty bitmap did not answer in the pause: ${describeError(e)}`;
      log.warn(`handoff of ${this.o.vmId}: the paused disk scan reads the whole layer: ${this.diskFallback}`);
      return undefined;
    });
  }

  /**
   * Reads the VM's launch overlay and starts sending it as round 0 (undefined, with the reason
   * kept for the report, when there is none usable). The round's answer is awaited by the next
   * send() or by decodeLaunchRound's caller; the destination applies it meanwhile.
   */
  private async startLaunchRound(dest: DestinationClient, sid: string, baseId: string, ramBytes: number): Promise<LaunchRound | undefined> {
    const t0 = Date.now();
    const r = launchRoundFor(await (this.launchRead ?? this.readLaunch(baseId, ramBytes)), this.xzUnits);
    this.launchRead = undefined;
    if ('unusable' in r) {
      this.launchOverlay = { used: false, reason: r.unusable };
      log.info(`handoff of ${this.o.vmId}: round 0 by compare: ${r.unusable}`);
      return undefined;
    }
    this.phases.launch_round_read_wait = Date.now() - t0;
    // The round's parts as read (never joined into one 29 MB buffer: each copy of it cost 0.1-0.2 s).
    const body = encodeRoundParts({ round: 0, final: false, segments: r.segments, ...(r.units ? { units: r.units } : {}) }, r.data);
    const bytes = body.reduce((n, b) => n + b.length, 0);
    if (r.units) this.phases.launch_round_xz_units = r.units.length;
    this.mark('at_launch_round_send');
    const sent = watchRequestSent();
    this.inFlight = dest.round(sid, 0, body, sent).then((answer) => {
      this.phases.launch_round_send_apply = Date.now() - t0;
      this.launchApplied = true;
      this.mark('at_launch_round_applied');
      if (this.phases.at_launch_round_sent !== undefined) this.round0WireMs = this.phases.at_launch_round_applied - this.phases.at_launch_round_sent;
      for (const [k, v] of Object.entries(answer.phases_ms ?? {})) if (Number.isFinite(v)) this.phases[`destination_launch_round_${k}`] = v;
    });
    this.inFlight.catch(() => undefined); // awaited by the next send or at the end
    this.roundBytes.push(bytes);
    this.roundPages.push(r.chunks.ram);
    this.roundDisk.push(r.chunks.disk);
    this.launchOverlay = { used: true, overlayId: r.overlayId };
    this.o.progress({ phase: 'round', done: 1, message: `round 0: the launch overlay ${r.overlayId.slice(0, 12)} as it is stored${r.units ? ` (${r.units.length} xz units)` : ''} (${r.chunks.ram} RAM pages, ${r.chunks.disk} disk chunks, ${bytes} bytes)` });
    // The caller's synchronous work (the copy of what the destination holds, QEMU's first pass, the
    // base's index) only once the round's first bytes are written: until then each of its blocks
    // would hold the round's first byte back (the link idled ~0.9 s so before).
    await sent.sent;
    this.mark('at_launch_round_sent');
    return r;
  }

  /**
   * While begin travels: the launch overlay (round 0) and the base's digest lists (~40 MB for the Debian
   * base, read off the event loop). Not the kept launch digests: checking them (SHA-256 of ~8 MB) is
   * synchronous and, with a begin that answers fast, fell on round 0's connect (handed to fetch ->
   * first bytes 92-148 ms instead of 24-43, loaded); they are read once round 0's first bytes are out.
   */
  private prepare(baseId: string, ramBytes: number): { launch: Promise<LaunchRound | { unusable: string }>; baseDigests: Promise<Record<Target, Buffer>> } {
    return { launch: this.readLaunch(baseId, ramBytes), baseDigests: readBaseDigests(this.manager.bases.get(baseId)) };
  }

  /** Reads the VM's launch overlay as round 0 (launchRound.ts) with xz units allowed (launchRoundFor decides once begin named the features). */
  private async readLaunch(baseId: string, ramBytes: number): Promise<LaunchRound | { unusable: string }> {
    if (!launchOverlayEnabled()) return { unusable: 'CLOUDLET_HANDOFF_LAUNCH_OVERLAY=0' };
    const t0 = Date.now();
    const { files } = this.manager.layout(this.o.vmId);
    const disk = fs.statSync(this.manager.bases.get(baseId).disk).size;
    const r = await readLaunchRound(files.launchOverlay, readRecordedId(files.launchOverlayId), baseId, { ram: ramBytes, disk }, { units: true });
    this.phases.launch_round_read = Date.now() - t0;
    return r;
  }

  /** Decodes round 0 into `ram` and `disk` (what the destination holds once it applied it); the next round's number. */
  /** The launch digests kept in the VM's folder, if usable for this round 0 (else why not, logged; its computation, if still running, ended). */
  private async keptLaunchDigests(file: string, r: LaunchRound, baseId: string, pages: number, baseDisk: string): Promise<LaunchDigests | undefined> {
    // The file is renamed into place only when whole: one there is used even if its job still runs
    // (reading the RAM file into the page cache, at nice 19); a job that did not write it yet is
    // ended (its CPU would compete with the handoff's) and round 0 decoded here.
    let d = !launchDigestsEnabled() ? { unusable: 'CLOUDLET_LAUNCH_DIGESTS=0' }
      : await readLaunchDigestsAsync(file, { overlayId: r.overlayId, baseId, pages, diskChunks: Math.ceil(fs.statSync(baseDisk).size / CHUNK_SIZE) });
    if ('unusable' in d && cancelLaunchDigests(file)) d = { unusable: `the launch digests were still being computed (stopped): ${d.unusable}` };
    if ('unusable' in d) {
      log.info(`handoff of ${this.o.vmId}: round 0 decoded at the source: ${d.unusable}`);
      return undefined;
    }
    return d;
  }

  private holdKeptDigests(d: LaunchDigests, disk: LayerTracker): number {
    for (const [i, digest] of d.disk) disk.holdDigest(i, digest);
    this.phases.launch_round_kept_digests = 1;
    this.mark('at_launch_round_decoded');
    return 1;
  }

  private async decodeLaunchRound(r: LaunchRound, base: { ram: string; disk: string }, ram: ShadowPageTracker | DirtyPageTracker, disk: LayerTracker, baseDigests?: Record<Target, Buffer>): Promise<number> {
    const t0 = Date.now();
    const baseRead = new BaseChunks(base);
    try {
      await decodeLaunchRound(r, (t, i, out) => baseRead.read(t, i, out), {
        hold: (t, i, d, kept) => (t === 'ram' ? ram.hold(i, d) : disk.hold(i, d, kept)),
        held: (t, i, out) => (t === 'ram' ? ram.page(i, out) : disk.held(i, out)),
        holdCopy: (t, i, rt, ref) => {
          if (t !== 'ram' || rt !== 'ram' || !(ram instanceof DirtyPageTracker)) return false;
          ram.holdCopy(i, ref);
          return true;
        },
        // A base page into the digest copy: the base's own digest, nothing read or hashed.
        ...(ram instanceof DirtyPageTracker && baseDigests ? {
          holdBase: (t: Target, i: number, rt: Target, ref: number) => {
            if (t !== 'ram') return false;
            const d = baseDigests[rt];
            if (ref < 0 || (ref + 1) * 32 > d.length) throw new CloudletError('Corrupt', `round 0: ram chunk ${i} refers to base ${rt} chunk ${ref}, outside the base`);
            ram.holdDigest(i, d.subarray(ref * 32, ref * 32 + 32));
            return true;
          },
        } : {}),
      }, this.compressor, this.o.signal);
    } finally { baseRead.close(); }
    this.phases.launch_round_decode = Date.now() - t0;
    this.mark('at_launch_round_decoded');
    return 1;
  }

  /** Every chunk the qcow2 layer holds that differs from what the destination has (LayerTracker). */
  private scanDisk(tracker: LayerTracker, enc: RoundEncoder, consistent: boolean): Promise<number> {
    return tracker.scan((idx, data, d) => enc.add('disk', idx, data, d), consistent);
  }

  /** A live round: encoded, sent, applied at the destination. `tag`: its send time and the destination's answer go into phases_ms under it. */
  private async send(dest: DestinationClient, sid: string, round: number, final: boolean, enc: RoundEncoder, pages: number, diskChunks: number, deviceState?: Buffer, tag?: string): Promise<void> {
    const body = await this.encodeRound(round, final, enc, pages, diskChunks, deviceState);
    const t1 = Date.now();
    await this.roundBefore();
    const answer = await dest.round(sid, round, body);
    if (tag) {
      this.phases[`${tag}_send`] = Date.now() - t1;
      for (const [k, v] of Object.entries(answer.phases_ms ?? {})) if (Number.isFinite(v)) this.phases[`destination_${tag}_${k}`] = v;
    }
    if (!final) enc.prepare(); // the next round's encoder now, not in the paused round
  }

  /** The round before (the launch round, sent while the next was prepared) answered: the destination applies rounds in order. */
  private async roundBefore(): Promise<void> {
    if (this.inFlight) { const p = this.inFlight; this.inFlight = undefined; await p; }
  }

  /** A round's body (counted in the report's per-round figures); `finish`: the destination finishes right after applying it. */
  private async encodeRound(round: number, final: boolean, enc: RoundEncoder, pages: number, diskChunks: number, deviceState?: Buffer, finish = false, stateAfterBase = false): Promise<Buffer> {
    const r = await enc.finish(deviceState);
    const body = encodeRoundBody({ round, final, ...(finish ? { finish } : {}), ...(stateAfterBase ? { state_after_base: true, base_state_sha256: this.baseStateSha } : {}), segments: r.segments }, r.data);
    this.roundBytes.push(body.length);
    this.roundPages.push(pages);
    this.roundDisk.push(diskChunks);
    return body;
  }

  /** The tracker's view of QEMU's stop (ms after the STOP event) and of its last pass, into phases_ms. */
  private timelinePhases(tracker: MigrationTracker, tPause: number): void {
    const t = tracker.timeline;
    const at = (x: number | undefined) => (x === undefined ? undefined : Math.max(0, Math.round(x - tPause)));
    const put = (k: string, v: number | undefined) => { if (v !== undefined && Number.isFinite(v)) this.phases[k] = v; };
    put('qemu_stop_to_final_pass', at(t.finalPass));
    put('qemu_stop_to_last_page', at(t.completing));
    put('qemu_stop_to_stream_end', at(t.streamEnd));
    put('qemu_final_pass_pages', t.finalPages);
    put('qemu_final_pass_differing', t.finalDiffering);
    put('qemu_tracker_downtime', t.qemuDowntimeMs);
    put('qemu_tracker_total', t.qemuTotalMs);
    put('qemu_tracker_syncs', t.qemuSyncs);
  }

  /** Tracking falls back to the full compare: said in the log, the progress and the report. */
  private fallBack(reason: string): void {
    this.tracking = { method: 'full-compare', fallback: reason };
    log.warn(`handoff of ${this.o.vmId}: dirty tracking falls back to the full RAM compare: ${reason}`);
    this.o.progress({ phase: 'round', message: `tracking falls back to the full RAM compare: ${reason}` });
  }

  /**
   * finish, and if its answer does not come (lost, timeout, destination restarted), the
   * destination's word on whether the VM runs there: its answer if it runs; the finish error if
   * it does not (then the source resumes); OutcomeUnknown if the destination never says.
   */
  private async finishAndConfirm(dest: DestinationClient, sid: string, finish: () => Promise<FinishResponse>): Promise<FinishResponse> {
    try {
      return await finish();
    } catch (e) {
      // Never received (no connection): the destination cannot have resumed the VM; resume here.
      if (e instanceof NotDelivered) throw e;
      // Test hook: the source stops here (to be killed) after finish's answer was lost.
      await failpoint('handoff-confirm');
      const deadline = Date.now() + confirmMs();
      let last = describeError(e);
      for (;;) {
        try {
          const st = await dest.status(sid);
          if (st.state === 'running' && st.finish) return st.finish;
          if (st.state === 'not_running') throw e;
          last = 'the destination is still finishing';
        } catch (q) {
          if (q === e) throw e;
          last = describeError(q);
        }
        if (Date.now() >= deadline) throw new OutcomeUnknown(last);
        this.o.progress({ phase: 'resume', message: `finish at ${dest.where} did not answer (${describeError(e)}); asking whether the VM runs there` });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Unpause (QEMU still there) or restart from the saved state (QEMU gone). */
  private async resumeHere(baseId: string): Promise<void> {
    try {
      await this.manager.unpause(this.o.vmId);
    } catch (e) {
      if (this.manager.get(this.o.vmId).status !== 'stopped') throw e;
      await this.manager.resume(baseId, { name: this.o.vmId });
    }
  }

  private lap(name: string, since: number): void { this.phases[name] = Date.now() - since; }

  /** Phase `name` = ms since the handoff began (a point on its timeline). */
  private mark(name: string): void { this.phases[name] = Date.now() - this.startedAt; }
}

/** The base's digest lists, read off the event loop. */
async function readBaseDigests(base: { ramDigests: string; diskDigests: string }): Promise<Record<Target, Buffer>> {
  const [ram, disk] = await Promise.all([readWhole(base.ramDigests), readWhole(base.diskDigests)]);
  return { ram, disk };
}

/** The RAM pages round 0 writes (from its segments' chunk lists; the payload is not needed), marked 1. */
export function launchRamPages(r: Pick<LaunchRound, 'segments'>, pages: number): Uint8Array {
  const marks = new Uint8Array(pages);
  for (const s of r.segments) {
    if (s.target !== 'ram') continue;
    for (const [first, n] of s.chunks ?? []) marks.fill(1, Math.min(first, pages), Math.min(first + n, pages));
  }
  return marks;
}

/** Heartbeats to the destination every `ms` until stopped (one at a time; a lost one is not retried). */
/** The overlay ID synthesis recorded for the VM (undefined when none was: an older VM, or not made from a file). */
function readRecordedId(file: string): string | undefined {
  try { return fs.readFileSync(file, 'utf8').trim() || undefined; } catch { return undefined; }
}

function keepAlive(dest: DestinationClient, sid: string, ms: number): { stop(): void } {
  let inFlight = false;
  const t = setInterval(() => {
    if (inFlight) return;
    inFlight = true;
    dest.heartbeat(sid).catch(() => undefined).finally(() => { inFlight = false; });
  }, ms);
  return { stop: () => clearInterval(t) };
}

/** A disk chunk found by a scan, not yet in a round. */
interface DiskChunk { index: number; data: Buffer; digest: Buffer }

/** The chunks of the layer that differ from what the destination holds, kept aside (ascending). */
async function scanInto(disk: LayerTracker, consistent: boolean): Promise<DiskChunk[]> {
  const out: DiskChunk[] = [];
  await disk.scan(async (index, data, digest) => { out.push({ index, data, digest }); }, consistent);
  return out;
}

/** Two ascending lists of chunks as one, a chunk in both taken from `later` (its newer bytes). */
function mergeChunks(earlier: DiskChunk[], later: DiskChunk[]): DiskChunk[] {
  if (!earlier.length) return later;
  const out: DiskChunk[] = [];
  let i = 0, j = 0;
  while (i < earlier.length || j < later.length) {
    if (j >= later.length || (i < earlier.length && earlier[i].index < later[j].index)) out.push(earlier[i++]);
    else { if (i < earlier.length && earlier[i].index === later[j].index) i++; out.push(later[j++]); }
  }
  return out;
}

/** Adds the chunks to the round (one record each, ascending, as the destination requires). */
async function addDisk(enc: RoundEncoder, chunks: DiskChunk[]): Promise<number> {
  for (const c of chunks) await enc.add('disk', c.index, c.data, c.digest);
  return chunks.length;
}
