/**
 * Encodes one handoff round with the overlay module's own pieces: ChunkEncoder decides each
 * chunk's encoding (zero, copy of a base page/chunk, copy of an earlier chunk of this round, raw,
 * XOR), encodeSegment lays out ~1 MiB segments, SegmentCompressor compresses them on workers.
 * A fresh ChunkEncoder per round: its "copy of an earlier chunk" references are only valid within
 * one round (a later round may overwrite the chunk referred to). prepare() builds the next one
 * ahead, so the final round (VM paused) does not pay for indexing the base digests.
 */
import * as fs from 'fs';
import { setImmediate as nextTurn } from 'timers/promises';
import { ChunkEncoder, indexBase, indexBaseInSlices } from '../overlay/chunkEncoder';
import type { ChunkIndex } from '../overlay/chunkIndex';
import {
  CHUNK_SIZE, ChunkRecord, encodeSegment, SEGMENT_MAX_RECORDS, SEGMENT_TARGET_BYTES, SegmentEntry, Target, toRuns,
} from '../overlay/format';
import type { SegmentCompressor } from '../overlay/segmentCompressor';

export interface BaseFiles { ramFile: string; diskFile: string; ramDigests: Buffer; diskDigests: Buffer }

export interface EncodedRound { segments: SegmentEntry[]; data: Buffer[]; chunks: number; bytes: number }

export class RoundEncoder {
  private next?: ChunkEncoder;
  /** The base's digests indexed once for every round's encoder (indexBase). */
  private baseIndex?: ChunkIndex;
  /** The index being built a slice per turn of the event loop (indexInBackground), if it is. */
  private building?: Generator<void, ChunkIndex>;
  private encoder?: ChunkEncoder;
  private open: Record<Target, { records: ChunkRecord[]; payload: Buffer[] }> = { ram: { records: [], payload: [] }, disk: { records: [], payload: [] } };
  private jobs: Array<Promise<{ entry: SegmentEntry; data: Buffer }>> = [];
  private chunks = 0;
  private readonly fds: Record<Target, number>;

  /** Who compresses the segments: the workers, or InlineZstd for the paused round. */
  compressor: Pick<SegmentCompressor, 'compress' | 'threads'>;

  constructor(private readonly base: BaseFiles, compressor: Pick<SegmentCompressor, 'compress' | 'threads'>, public level: number) {
    this.compressor = compressor;
    this.fds = { ram: fs.openSync(base.ramFile, 'r'), disk: fs.openSync(base.diskFile, 'r') };
  }

  /** Builds the next round's encoder now (the first one indexes every base digest, which takes a moment). */
  prepare(): void {
    if (!this.baseIndex && this.building) this.baseIndex = drain(this.building); // the rest of it, now
    this.baseIndex ??= indexBase(this.base.ramDigests, this.base.diskDigests);
    this.next ??= new ChunkEncoder(this.base.ramDigests, this.base.diskDigests, (target, index, out) =>
      fs.readSync(this.fds[target], out, 0, CHUNK_SIZE, index * CHUNK_SIZE) === CHUNK_SIZE ? out : undefined, this.baseIndex);
  }

  /**
   * Builds the base's index a slice per turn of the event loop (~1.3 M digests: 0.1 s idle, 0.5-1 s
   * loaded, in one block), so that requests in flight keep being written meanwhile; prepare() or
   * begin() before it ends builds the rest at once.
   */
  async indexInBackground(slice?: number): Promise<void> {
    if (this.baseIndex || this.building) return;
    const steps = indexBaseInSlices(this.base.ramDigests, this.base.diskDigests, slice);
    this.building = steps;
    for (;;) {
      if (this.baseIndex) return; // finished by prepare()
      const r = steps.next();
      if (r.done) { this.baseIndex = r.value; return; }
      await nextTurn();
    }
  }

  begin(): void {
    this.prepare();
    this.encoder = this.next;
    this.next = undefined;
    this.jobs = [];
    this.chunks = 0;
  }

  async add(target: Target, index: number, data: Buffer, digest: Buffer): Promise<void> {
    const e = this.encoder!.encode(target, index, data, digest);
    const seg = this.open[target];
    seg.records.push({ encoding: e.encoding, index, ref: e.ref, refTarget: e.refTarget });
    if (e.payload) seg.payload.push(e.payload);
    this.chunks++;
    if (seg.payload.length * CHUNK_SIZE >= SEGMENT_TARGET_BYTES || seg.records.length >= SEGMENT_MAX_RECORDS) this.flush(target);
    // Keep the number of segments in flight bounded (memory), without serialising the workers.
    if (this.jobs.length > this.compressor.threads * 4) await this.jobs[this.jobs.length - this.compressor.threads * 2];
  }

  /** Ends the round; the device state (final round) goes in whole as its own segment. */
  async finish(deviceState?: Buffer): Promise<EncodedRound> {
    this.flush('disk');
    this.flush('ram');
    if (deviceState) {
      const raw = deviceState;
      this.jobs.push(this.compressor.compress(raw, this.level).then((c) => ({
        entry: { digest: c.digest, kind: 'device-state', size: c.data.length, rawSize: raw.length } as SegmentEntry, data: c.data,
      })));
    }
    const done = await Promise.all(this.jobs);
    this.jobs = [];
    this.encoder = undefined;
    return { segments: done.map((d) => d.entry), data: done.map((d) => d.data), chunks: this.chunks, bytes: done.reduce((n, d) => n + d.data.length, 0) };
  }

  close(): void {
    for (const fd of Object.values(this.fds)) { try { fs.closeSync(fd); } catch { /* closed */ } }
  }

  private flush(target: Target): void {
    const seg = this.open[target];
    if (!seg.records.length) return;
    this.open[target] = { records: [], payload: [] };
    const raw = encodeSegment(seg.records, seg.payload);
    const chunks = toRuns(seg.records.map((r) => r.index));
    const job = this.compressor.compress(raw, this.level).then((c) => ({
      entry: { digest: c.digest, kind: 'chunks', target, size: c.data.length, rawSize: raw.length, records: seg.records.length, chunks } as SegmentEntry,
      data: c.data,
    }));
    job.catch(() => { /* surfaced by finish */ });
    this.jobs.push(job);
  }
}

/** The rest of a generator's steps at once; its result. */
function drain<T>(g: Generator<void, T>): T {
  for (;;) { const r = g.next(); if (r.done) return r.value; }
}
