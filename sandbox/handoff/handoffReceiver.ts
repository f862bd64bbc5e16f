/**
 * The destination of a handoff. begin checks what refuses the VM here (input, base held and its
 * sizes, max_servers, base files, host QEMU) and claims its sandbox, answers, and then prepares it
 * (SandboxManager.claimLaunch: RAM copy of the base, empty qcow2 layer, ports; a failure there is
 * the next round's error) and starts its QEMU paused with -incoming defer while the rounds come
 * in; rounds go straight into that QEMU's RAM file and, after each round that touched the disk,
 * into its qcow2 layer (held inactive by QEMU until the device state is loaded).
 * finish then only loads the device state and continues the VM (no files built, no new process, in
 * the downtime), and creates the server in the caller's project. A session lives in memory only: a
 * daemon restart empties tmp/ and cleans the half-made sandbox ('starting'), and the source, which
 * has not let go of its VM, resumes it there.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { Readable } from 'stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext, DaemonContext } from '../cloudlet/context';
import type { ServerLifecycle } from '../cloudlet/servers/serverLifecycle';
import type { AdmissionSlot } from '../cloudlet/servers/admission';
import { CloudletError, describeError } from '../common/errors';
import { storePaths } from '../common/paths';
import type { PreparedFiles, SandboxManager, VmConfig } from '../sandboxes/sandboxManager';
import type { SegmentCompressor } from '../overlay/segmentCompressor';
import { RoundApplier } from './roundApplier';
import { InlineZstd, INLINE_ROUND_BYTES } from './inlineZstd';
import { openRound } from './roundReader';
import { fileSha256, HANDOFF_FEATURES, HANDOFF_PATH, readAgreedBaseState, STATE_AFTER_BASE_MAX_BYTES, stateAfterBaseEnabled, verifyRamEnabled, type BeginRequest, type FinishResponse } from './protocol';
import { handoffSchemas as S } from '../cloudlet/api/schemas/handoff';
import { failpoint, failpointHit } from '../common/failpoint';
import { isTcpPort } from '../common/tcpPort';
import { envNumber } from '../common/env';
import { continuationStart, statePrefix } from '../qemu/migrationStream';
import { SHARED_BLOCK } from './migrationTracker';
import { xzAvailable } from '../overlay/xzUnits';
import type { SegmentEntry } from '../overlay/format';

/** What begin goes on preparing after its answer (rounds and finish wait for it: Session.prepared). */
interface Prepared {
  applier: RoundApplier;
  /**
   * The base RAM copied into the sandbox's RAM file (not awaited by begin's preparation: the copy
   * goes on while the first round's disk segments come): RAM is written and finish loads after it.
   */
  ramReady: Promise<void>;
  /** The prepared sandbox's QEMU start (awaited by finish). */
  qemu: Promise<void>;
}

interface Session {
  id: string;
  projectId: string;
  userId: string;
  req: BeginRequest;
  /** The sandbox claimed at begin; its files, ports, applier and QEMU come behind begin's answer (`prepared`). */
  vmId: string;
  /** The session's tmp/ folder (the applier's files). */
  dir: string;
  prepared: Promise<Prepared>;
  /** `prepared` rejected after the sandbox manager discarded the sandbox itself. */
  discarded?: boolean;
  /** The session's resources given back (once: drop, or a failed preparation). */
  released?: Promise<void>;
  /** The QEMU started at begin has opened its files (or failed): the layer may be rewritten. */
  qemuSettled: boolean;
  /** The session's place under max_servers, from begin until its server row is written or it ends. */
  slot: AdmissionSlot;
  rounds: number;
  bytes: number;
  final: boolean;
  /** The final round's device state continues the base's saved state (state_after_base). */
  stateAfterBase?: boolean;
  /** The SHA-256 of the base's state.bin begin offered to continue (state-after-base named), if any. */
  baseStateSha?: string;
  /** The protocol features begin named (protocol.ts): what this session's rounds may use. */
  features: string[];
  busy: boolean;
  /** An abort that came while a round or finish was running: the session ends when that request does. */
  abortRequested?: boolean;
  serverId?: string;
  /** finish's answer, given again to a finish sent twice. */
  result?: FinishResponse;
  /** Last word from the source (a request, a heartbeat, round bytes arriving). */
  touched: number;
  /** Ends the round upload in progress (a source gone silent in the middle of one). */
  cut?: (why?: string) => void;
}

/** A finished session waiting for the source's report is forgotten after this long. */
const IDLE_MS = 10 * 60_000;

/**
 * A session whose source said nothing (no request, no heartbeat, no round bytes) for this long is
 * ended with its QEMU: the source died or lost the network (CLOUDLET_HANDOFF_SILENCE_MS, default 30 s:
 * a source blocks its event loop for a few seconds reading a large base RAM before its first round).
 * Sources heartbeat at a third of it (begin's answer says how often).
 */
export function silenceMs(): number {
  return Math.floor(envNumber('CLOUDLET_HANDOFF_SILENCE_MS', 30_000, 300));
}

export interface ReceiverDeps {
  ctx: DaemonContext;
  /** Owns the server rows and the admission rule (max_servers) this side's sessions count against. */
  lifecycle: ServerLifecycle;
  manager: SandboxManager;
  compressor: () => SegmentCompressor;
}

export class HandoffReceiver {
  private readonly sessions = new Map<string, Session>();
  private readonly timer: NodeJS.Timeout;
  private readonly silence = silenceMs();
  private readonly inline = new InlineZstd();
  /** Per base: what goes before a device state that continues the base's saved state (statePrefix), made at begin. */
  private readonly prefixes = new Map<string, Promise<{ prefix: Buffer; start: Buffer }>>();

  constructor(private readonly d: ReceiverDeps) {
    this.timer = setInterval(() => this.sweep(), Math.min(1000, this.silence / 3)).unref();
  }

  routes(app: FastifyInstance): void {
    const { ctx } = this.d;
    app.post(HANDOFF_PATH, { schema: S.begin }, async (req, reply) => reply.code(201).send({ session: await this.begin(ctx.auth(req), (req.body as any)?.handoff) }));
    app.put<{ Params: { sid: string; n: string } }>(`${HANDOFF_PATH}/:sid/rounds/:n`, { schema: S.round }, async (req) => {
      const s = this.session(ctx.auth(req), req.params.sid);
      const r = await this.exclusive(s, () => this.round(s, Number(req.params.n), req));
      if (r.finish && failpointHit('handoff-finish-response')) req.raw.socket.destroy();
      return r;
    });
    app.post<{ Params: { sid: string } }>(`${HANDOFF_PATH}/:sid/finish`, { schema: S.finish }, async (req) => {
      const s = this.session(ctx.auth(req), req.params.sid);
      // A finish sent again (its answer was lost) gets the same answer: the VM runs here once.
      if (s.result) return s.result;
      const r = await this.exclusive(s, () => this.finish(s));
      if (failpointHit('handoff-finish-response')) req.raw.socket.destroy();
      return r;
    });
    // Whether the session's VM runs here: what a source asks when it did not get finish's answer.
    // The source's "still here" while it works between requests (see silenceMs).
    app.put<{ Params: { sid: string } }>(`${HANDOFF_PATH}/:sid/heartbeat`, { schema: S.heartbeat }, async (req, reply) => {
      this.session(ctx.auth(req), req.params.sid);
      return reply.code(204).send();
    });
    app.get<{ Params: { sid: string } }>(`${HANDOFF_PATH}/:sid`, { schema: S.status }, async (req) => ({ handoff: this.status(ctx.auth(req), req.params.sid) }));
    app.put<{ Params: { sid: string } }>(`${HANDOFF_PATH}/:sid/report`, { schema: S.report }, async (req, reply) => {
      const s = this.session(ctx.auth(req), req.params.sid);
      this.report(s, (req.body as any)?.report);
      return reply.code(204).send();
    });
    app.delete<{ Params: { sid: string } }>(`${HANDOFF_PATH}/:sid`, { schema: S.abort }, async (req, reply) => {
      const s = this.session(ctx.auth(req), req.params.sid);
      if (s.serverId) throw new CloudletError('Conflict', `handoff ${s.id} already finished: server ${s.serverId} runs here`);
      // Not underneath a running round or finish (a finish could still record a server for a dropped VM
      // and its released place): that request ends first (a round is cut), then the session goes.
      if (s.busy) { s.abortRequested = true; s.cut?.('the session was aborted'); } else await this.drop(s);
      return reply.code(204).send();
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.sessions.values()].map((s) => this.drop(s)));
  }

  private async begin(a: AuthContext, b: BeginRequest | undefined): Promise<{ id: string; heartbeat_ms: number; features: string[]; base_state_sha256?: string }> {
    if (!b || typeof b !== 'object') throw new CloudletError('BadInput', "handoff begin needs a 'handoff' object");
    if (typeof b.name !== 'string' || !b.name.trim() || b.name.length > 255) throw new CloudletError('BadInput', 'handoff begin needs name: a non-empty server name of at most 255 characters');
    if (typeof b.base_id !== 'string' || !/^[0-9a-f]{64}$/.test(b.base_id)) throw new CloudletError('BadInput', 'handoff begin needs base_id: the 64-digit base ID of the VM');
    const sent = b.vm_config as unknown as VmConfig | undefined;
    if (!sent || typeof sent.machine !== 'string' || typeof sent.cpuModel !== 'string' || !Number.isInteger(sent.ramBytes)) {
      throw new CloudletError('BadInput', 'handoff begin needs vm_config with machine, cpuModel and ramBytes');
    }
    // Only the MAC is the VM's own; all else comes from the base held here, never from the caller (it becomes QEMU arguments).
    const mac = sent.nic?.mac;
    if (typeof mac !== 'string' || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) throw new CloudletError('BadInput', 'handoff begin needs vm_config.nic.mac: a MAC address like 52:54:00:12:34:56');
    if (!Array.isArray(b.ports) || b.ports.some((p) => !isTcpPort(p))) throw new CloudletError('BadInput', 'handoff begin needs ports: a list of guest TCP ports');
    let base;
    try { base = this.d.manager.bases.get(b.base_id); } catch {
      throw new CloudletError('MissingBase', `this cloudlet does not hold base ${b.base_id}; import that base here before handing a VM of it off to this cloudlet`);
    }
    if (base.manifest.vm.ramBytes !== sent.ramBytes) throw new CloudletError('Mismatch', `the VM has ${sent.ramBytes} bytes of RAM, base ${b.base_id.slice(0, 12)} here has ${base.manifest.vm.ramBytes}`);
    const cfg: VmConfig = { ...base.manifest.vm, nic: { ...base.manifest.vm.nic, mac } };
    b = { ...b, vm_config: cfg as unknown as BeginRequest['vm_config'] };
    // The session's VM counts against max_servers from here (checked and held before any await).
    const slot = this.d.lifecycle.admission.reserve();
    const id = crypto.randomUUID();
    const dir = path.join(storePaths(this.d.ctx.dataDir).tmp, `handoff-${id}`);
    // What refuses the launch (base files, host QEMU, accelerator) is checked now, before the source
    // touches its VM; the sandbox's files, ports, applier and QEMU come after the answer (~100-350 ms
    // under load: qemu-img, the port probe, QEMU's spawn), while the source starts its round 0.
    const launch = await this.d.manager.claimLaunch({ baseId: b.base_id, vmConfig: cfg, ports: b.ports, name: `ho-${id.slice(0, 13)}` }, { ramInBackground: true })
      .catch((e) => { slot.release(); throw e; });
    // state-after-base: offered with the SHA-256 of this base's state.bin (the base ID does not cover it).
    const stateEntry = base.manifest.files['state.bin'];
    const offer = namedFeatures().includes('state-after-base') && stateAfterBaseEnabled() && stateEntry && stateEntry.bytes <= STATE_AFTER_BASE_MAX_BYTES
      ? stateEntry.sha256 : undefined;
    if (offer) this.basePrefix(b.base_id, base.state, offer).catch(() => undefined); // ready before the pause; a failure shows at finish
    const features = namedFeatures().filter((f) => f !== 'state-after-base' || offer !== undefined);
    const fields: Omit<Session, 'prepared'> = { id, projectId: a.projectId, userId: a.userId, req: b, vmId: launch.id, dir,
      qemuSettled: false, baseStateSha: offer, features, slot, rounds: 0, bytes: 0, final: false, busy: false, touched: Date.now() };
    const session: Session = Object.assign(fields, { prepared: this.prepare(fields, launch.prepared, { ram: base.ram, disk: base.disk }) });
    // A failed preparation gives everything back at once; the session stays to tell the next round why.
    session.prepared.catch((e) => {
      this.d.ctx.log.warn(`handoff ${id}: preparing the VM here: ${describeError(e)}`);
      void this.release(session);
    });
    this.sessions.set(id, session);
    this.d.ctx.log.info(`handoff ${id}: receiving '${b.name}' of base ${b.base_id.slice(0, 12)} for project ${a.projectName}`);
    return { id, heartbeat_ms: Math.floor(this.silence / 3), features, ...(offer ? { base_state_sha256: offer } : {}) };
  }

  /**
   * begin's work after its answer: the sandbox's files and ports (`files`), the round applier, then
   * its QEMU started (while the rounds come in: it only maps the RAM file and opens the layer
   * inactive; a failure of that start fails the next round once it settled, else finish). On failure what it made itself is gone; the
   * sandbox goes with release().
   */
  private async prepare(s: Pick<Session, 'id' | 'dir' | 'discarded' | 'qemuSettled'>, files: Promise<PreparedFiles>, base: { ram: string; disk: string }): Promise<Prepared> {
    const prep = await files.catch((e) => { s.discarded = true; throw e; });
    // The base RAM copy (0.3-0.45 s for the 1 GiB Debian base here, no reflink) goes on meanwhile.
    const ramReady = prep.ramReady ?? Promise.resolve();
    ramReady.catch(() => undefined); // surfaced by the round or finish that waits for it
    let applier: RoundApplier | undefined;
    try {
      applier = await RoundApplier.create(s.dir, base, { ramFile: prep.files.ram, diskLayer: prep.files.disk });
      if (failpointHit('handoff-prepare-fails')) throw new CloudletError('Internal', 'failpoint handoff-prepare-fails: the preparation failed');
    } catch (e) {
      applier?.close();
      fs.rmSync(s.dir, { recursive: true, force: true });
      await ramReady.catch(() => undefined); // no copy still writing into files being removed
      throw e;
    }
    const qemu = this.d.manager.startPrepared(prep.id);
    qemu.catch((e) => this.d.ctx.log.warn(`handoff ${s.id}: starting the destination QEMU: ${describeError(e)}`));
    qemu.then(() => { s.qemuSettled = true; }, () => { s.qemuSettled = true; });
    return { applier, ramReady, qemu };
  }

  /** The session's prepared VM, or begin's failed preparation as this request's error (the session then ends). */
  private async ready(s: Session): Promise<Prepared> {
    try { return await s.prepared; } catch (e) {
      const c = e instanceof CloudletError ? e : undefined;
      throw new CloudletError(c?.code ?? 'Internal', `handoff ${s.id}: preparing the VM at this cloudlet failed: ${describeError(e)}`, { status: c?.status, cause: e });
    }
  }

  /** One round; a final round with `finish` in its header also finishes (finish()), its answer under `finish`. */
  private async round(s: Session, n: number, req: FastifyRequest): Promise<{ round: number; chunks: number; bytes: number; phases_ms: Record<string, number>; finish?: FinishResponse }> {
    const t0 = Date.now();
    if (n !== s.rounds) throw new CloudletError('Conflict', `handoff ${s.id} expects round ${s.rounds}, got ${n}`);
    if (s.final) throw new CloudletError('Conflict', `handoff ${s.id} already received its final round`);
    const body = roundBody(req, s.req.vm_config.ramBytes + (256 << 20), () => { s.touched = Date.now(); });
    s.cut = (why = 'the source went silent') => req.raw.destroy(new Error(why));
    let r, p: Prepared;
    try {
      // begin's preparation (usually done long before): the body waits in the socket meanwhile.
      p = await this.ready(s);
      // Checked before a segment byte is read (roundReader.ts); segments are applied as they arrive.
      const rs = await openRound(body, n, { chunks: p.applier.chunkLimits, maxBytes: s.req.vm_config.ramBytes + (256 << 20), units: s.features.includes('xz-units') });
      if (rs.header.state_after_base && (!s.baseStateSha || rs.header.base_state_sha256 !== s.baseStateSha)) {
        throw new CloudletError('Mismatch', s.baseStateSha
          ? `handoff ${s.id}: the final device state continues base state ${rs.header.base_state_sha256!.slice(0, 12)}, base ${s.req.base_id.slice(0, 12)}'s state.bin here is ${s.baseStateSha.slice(0, 12)}`
          : `handoff ${s.id}: the final device state continues the base's saved state, which this cloudlet did not offer (state-after-base not named)`);
      }
      // The paused round (small: the last pages and the device state) is decompressed in this thread.
      const small = rs.header.final && rs.header.segments.reduce((t, e) => t + e.size + e.rawSize, 0) <= INLINE_ROUND_BYTES;
      const diskSegments = rs.header.segments.filter((e) => e.kind === 'chunks' && e.target === 'disk').length;
      r = { ...(await p.applier.apply(afterRamCopy(rs.segments(), p.ramReady), small ? this.inline : this.d.compressor(), n, { diskSegments, firstSyncAllowed: () => s.qemuSettled })), received: rs.received, final: rs.header.final, finish: rs.header.finish === true, afterBase: rs.header.state_after_base === true };
    } finally { s.cut = undefined; }
    const t1 = Date.now();
    // The first sync writes the whole layer over the empty one: not while the QEMU started at begin may
    // still be opening it (seen once in ~40 bench trials: "Image is not in qcow2 format" at its start);
    // the in-round sync (apply's firstSyncAllowed) waits for the same.
    if (!p.applier.layerWritten) await p.qemu.catch(() => undefined);
    // A QEMU that did not start here fails this round, while the source's VM still runs (review 13 F3:
    // seen only at finish before, after the source had paused its VM).
    if (s.qemuSettled) {
      await p.qemu.catch((e) => {
        const c = e instanceof CloudletError ? e : undefined;
        throw new CloudletError(c?.code ?? 'Internal', `handoff ${s.id}: starting the VM at this cloudlet failed: ${describeError(e)}`, { status: c?.status, cause: e });
      });
    }
    p.applier.syncDiskLayer();
    s.rounds++;
    s.bytes += r.received;
    s.final = r.final;
    s.stateAfterBase = r.afterBase;
    const phases: Record<string, number> = { read_apply: t1 - t0, sync_disk: Date.now() - t1 };
    if (r.syncDiskInRoundMs !== undefined) phases.sync_disk_in_round = r.syncDiskInRoundMs; // inside read_apply
    // The source asked to finish in the same request: the VM resumes here without another round trip.
    if (r.finish) return { round: n, chunks: r.chunks, bytes: r.received, phases_ms: phases, finish: await this.finish(s) };
    return { round: n, chunks: r.chunks, bytes: r.received, phases_ms: phases };
  }

  /** Loads the device state into the waiting QEMU and continues it; only then creates the server: nothing claims a VM that does not run. */
  private async finish(s: Session): Promise<FinishResponse> {
    if (!s.final) throw new CloudletError('Conflict', `handoff ${s.id} has not received its final round`);
    if (s.serverId) throw new CloudletError('Conflict', `handoff ${s.id} already finished`);
    const p = await this.ready(s);
    if (!p.applier.stateReceived) throw new CloudletError('BadInput', 'the handoff never sent the device state (no final round)');
    await failpoint('handoff-finish');
    await p.ramReady;
    const ramSha256 = verifyRamEnabled() ? fileSha256(p.applier.ramFile) : undefined;
    const t0 = Date.now();
    await p.qemu;
    const tLoad = Date.now();
    if (s.abortRequested) throw new CloudletError('Conflict', `handoff ${s.id} was aborted`);
    const vm = await this.d.manager.completePrepared(s.vmId, await this.deviceState(s, p.applier));
    // Aborted while the VM started: it goes with the session (no server row), the source keeps its copy.
    if (s.abortRequested) throw new CloudletError('Conflict', `handoff ${s.id} was aborted while its VM started here`);
    const tRunning = Date.now();
    p.applier.close();
    const ports = Object.fromEntries(vm.ports.map((p) => [String(p.guest), `127.0.0.1:${p.host}`]));
    const row = this.d.lifecycle.arrivedByHandoff(s.slot, { name: s.req.name, projectId: s.projectId, userId: s.userId, flavorId: s.req.flavor_id ?? '1',
      baseId: s.req.base_id, metadata: { ...(s.req.metadata ?? {}), handoff_session: s.id }, vmId: vm.id, ports });
    s.serverId = row.id;
    this.d.ctx.log.info(`handoff ${s.id}: '${s.req.name}' runs here as server ${row.id} after ${s.rounds} rounds, ${s.bytes} bytes`);
    // The part of the guest's pause spent here, by its QEMU's RESUME stamp (it starts the CPUs by
    // itself once the state loaded, before it says completed and before `cont`), and the connect
    // (its QEMU took the stream) when it was not connected to ahead.
    const stamp = (from: number | undefined, to: number | undefined) => (from !== undefined && to !== undefined ? { v: Math.max(0, Math.round(to - from)) } : undefined);
    const split = { load_to_resume: stamp(tLoad, vm.resumedAtMs), load_connect: stamp(tLoad, vm.loadingAtMs) };
    const phases: Record<string, number> = { qemu_wait: tLoad - t0, load_device_state_and_cont: tRunning - tLoad, server_record: Date.now() - tRunning };
    for (const [k, x] of Object.entries(split)) if (x) phases[k] = x.v;
    setImmediate(() => fs.rmSync(s.dir, { recursive: true, force: true }));
    s.result = { server: { id: row.id, name: row.name, status: 'ACTIVE', ports }, phases_ms: phases, ...(vm.resumedAtMs !== undefined ? { resumed_at_ms: vm.resumedAtMs } : {}), ...(ramSha256 ? { ram_sha256: ramSha256 } : {}) };
    return s.result;
  }

  /** The device state to load: as received, or after the base's prefix (state_after_base). */
  private async deviceState(s: Session, applier: RoundApplier): Promise<Buffer> {
    const state = fs.readFileSync(applier.deviceState);
    if (!s.stateAfterBase) return state;
    const { prefix, start } = await this.basePrefix(s.req.base_id, this.d.manager.bases.get(s.req.base_id).state, s.baseStateSha!);
    if (state.length < start.length || !state.subarray(0, start.length).equals(start)) {
      throw new CloudletError('BadInput', `handoff ${s.id}: the final device state does not continue base ${s.req.base_id.slice(0, 12)}'s saved state (it must begin with its RAM section's END)`);
    }
    return Buffer.concat([prefix, state]);
  }

  /**
   * The head and ROM-block pages of a base's saved state (statePrefix), made once per base (the last
   * few kept); the file must still hash to `sha256` (the one begin offered).
   */
  private basePrefix(baseId: string, stateFile: string, sha256: string): Promise<{ prefix: Buffer; start: Buffer }> {
    const key = `${baseId}:${sha256}`;
    let p = this.prefixes.get(key);
    if (!p) {
      p = new Promise((resolve, reject) => setImmediate(() => {
        try {
          const saved = readAgreedBaseState(stateFile, sha256);
          resolve({ prefix: statePrefix(saved, SHARED_BLOCK), start: continuationStart(saved.parser.ram!.sectionId) });
        } catch (e) { reject(e); }
      }));
      p.catch(() => this.prefixes.delete(key));
      this.prefixes.set(key, p);
      while (this.prefixes.size > 4) this.prefixes.delete(this.prefixes.keys().next().value!);
    }
    return p;
  }

  /**
   * 'running' (with finish's answer) once the VM runs here; 'finishing' while finish works; else
   * 'not_running'. A session no longer in memory (dropped, or lost by a restart) is 'running' only
   * if a live server of the caller's project came from it.
   */
  private status(a: AuthContext, id: string): { id: string; state: 'running' | 'finishing' | 'not_running'; finish?: FinishResponse } {
    const s = this.sessions.get(id);
    if (s && s.projectId === a.projectId) {
      s.touched = Date.now();
      if (s.result) return { id, state: 'running', finish: s.result };
      if (s.busy) return { id, state: 'finishing' };
      // 'not_running' is a promise the source acts on (it resumes its copy): a finish arriving late is refused.
      void this.drop(s);
      return { id, state: 'not_running' };
    }
    const row = this.d.lifecycle.servers.list(a.projectId).find((r) => r.metadata.handoff_session === id && (r.status === 'ACTIVE' || r.status === 'PAUSED'));
    if (!row) return { id, state: 'not_running' };
    return { id, state: 'running', finish: { server: { id: row.id, name: row.name, status: row.status, ports: row.ports } } };
  }

  /** The source's measurements, kept as the server's metadata (Nova metadata values are strings). */
  private report(s: Session, r: Record<string, unknown> | undefined): void {
    if (!s.serverId) throw new CloudletError('Conflict', `handoff ${s.id} has not finished`);
    if (!r || typeof r !== 'object') throw new CloudletError('BadInput', "handoff report needs a 'report' object");
    const extra: Record<string, string> = {};
    for (const k of ['total_ms', 'downtime_ms', 'bytes_sent', 'rounds', 'source_server_id', 'source']) if (r[k] !== undefined) extra[`handoff_${k}`] = String(r[k]);
    this.d.lifecycle.annotate(s.serverId, extra);
    this.sessions.delete(s.id);
  }

  private session(a: AuthContext, id: string): Session {
    const s = this.sessions.get(id);
    if (!s || s.projectId !== a.projectId) throw new CloudletError('NotFound', `handoff session ${id} could not be found`);
    s.touched = Date.now();
    return s;
  }

  private async exclusive<T>(s: Session, fn: () => Promise<T>): Promise<T> {
    if (s.busy) throw new CloudletError('Conflict', `handoff ${s.id} is busy with another request`);
    s.busy = true;
    try { return await fn(); } catch (e) {
      // A round that failed half-applied leaves the session unusable: drop it, the source starts over.
      if (!s.serverId) { this.d.ctx.log.warn(`handoff ${s.id}: ${describeError(e)}; session dropped`); await this.drop(s); }
      throw e;
    } finally {
      s.busy = false;
      if (s.abortRequested && !s.serverId && this.sessions.get(s.id) === s) await this.drop(s);
    }
  }

  /** Forgets a session; one that did not finish takes its prepared sandbox (and QEMU) with it. */
  private async drop(s: Session): Promise<void> {
    this.sessions.delete(s.id);
    if (s.serverId) { (await s.prepared.catch(() => undefined))?.applier.close(); return; }
    await this.release(s);
  }

  /** Gives back what an unfinished session holds (once): its files, QEMU and sandbox, then its admission slot. */
  private release(s: Session): Promise<void> {
    s.released ??= (async () => {
      const p = await s.prepared.catch(() => undefined); // begin's preparation ends first (it may be making files)
      p?.applier.close();
      fs.rmSync(s.dir, { recursive: true, force: true });
      await p?.qemu.catch(() => undefined);
      await p?.ramReady.catch(() => undefined); // no copy still writing into files being removed
      if (s.discarded) { s.slot.release(); return; }
      // The slot is given back once the prepared sandbox is gone (else a new VM could start beside it).
      await this.d.manager.delete(s.vmId).finally(() => s.slot.release()).catch((e) => this.d.ctx.log.warn(`handoff ${s.id}: removing the prepared sandbox ${s.vmId}: ${describeError(e)}`));
    })();
    return s.released;
  }

  /** Ends sessions whose source went silent (their QEMU with them); forgets finished ones never reported. */
  private sweep(): void {
    const now = Date.now();
    for (const s of this.sessions.values()) {
      const quiet = now - s.touched;
      if (s.serverId) { if (quiet > IDLE_MS && !s.busy) this.sessions.delete(s.id); continue; }
      if (quiet <= this.silence) continue;
      if (s.busy) { s.cut?.(); continue; } // a stalled round upload: its failure drops the session
      this.d.ctx.log.warn(`handoff ${s.id}: no word from the source for ${quiet} ms; session ended, its VM removed`);
      void this.drop(s);
    }
  }
}

/**
 * A round's segments, each RAM one only once the base RAM copy is in the RAM file (`ramReady`), and
 * the round's end too (its copies read RAM back); the disk segments before them (a launch round
 * sends its disk segments first) are not held.
 */
export async function* afterRamCopy<T extends { entry: SegmentEntry }>(segments: AsyncIterable<T>, ramReady: Promise<void>): AsyncGenerator<T> {
  let ready = false;
  for await (const seg of segments) {
    if (!ready && seg.entry.target === 'ram') { await ramReady; ready = true; }
    yield seg;
  }
  await ramReady;
}

/** The round's body stream, refused early if it is not a stream or declares a length over `max`; `onData` per chunk. */
function roundBody(req: FastifyRequest, max: number, onData: () => void): AsyncIterable<Buffer> {
  const body = req.body as Readable | undefined;
  if (!body || typeof body.pipe !== 'function') throw new CloudletError('BadInput', 'a handoff round is sent as application/octet-stream', { status: 415 });
  const declared = Number(req.headers['content-length']);
  if (declared > max) throw new CloudletError('BadInput', `handoff round of ${declared} bytes is over the limit of ${max}`, { status: 413 });
  return (async function* () { for await (const c of body) { onData(); yield c as Buffer; } })();
}

/** The features begin names: all, unless CLOUDLET_HANDOFF_FEATURES lists fewer (tests: a destination of an earlier release). */
function namedFeatures(): string[] {
  const only = process.env.CLOUDLET_HANDOFF_FEATURES;
  // xz-units only where liblzma loads (the units are decoded here).
  const all = HANDOFF_FEATURES.filter((f) => f !== 'xz-units' || xzAvailable());
  return only === undefined ? all : all.filter((f) => only.split(',').includes(f));
}
