/**
 * The overlay format: constants, manifest types, canonical JSON, the container header and the
 * decompressed segment layout. Pure functions, no I/O. docs/overlay-format.md is the prose version.
 */
import { createHash } from 'crypto';
import { CloudletError } from '../common/errors';
import { checkManifestSchema } from './manifestSchema';
import { CHUNK_SIZE, CONTAINER_VERSION_SEGMENTS, CONTAINER_VERSION_UNITS, ENCODING_NAMES, FORMAT_NAME, FORMAT_VERSION, LIMITS, SEGMENT_MAX_RECORDS, TARGETS, type EncodingName, type Target } from './formatConstants';
import type { VmConfig } from '../qemu/vmconfig';

export { CHUNK_SIZE, CONTAINER_VERSION_SEGMENTS, CONTAINER_VERSION_UNITS, ENCODING_NAMES, FORMAT_NAME, FORMAT_VERSION, LIMITS, XZ_DECODER_MEMLIMIT, MAX_CHAIN_DEPTH, SEGMENT_MAX_RECORDS, TARGETS, type EncodingName, type Target } from './formatConstants';

/** Container: 8-byte magic, u32 BE version, u32 BE manifest length, manifest, segments. */
export const CONTAINER_MAGIC = Buffer.from('CLDOVRLY', 'ascii');
export const CONTAINER_HEADER_SIZE = 16;
/** Decompressed chunk segment: magic, u32 LE version, u32 LE record count, u32 LE data chunks. */
export const SEGMENT_MAGIC = Buffer.from('CSEG', 'ascii');
export const SEGMENT_HEADER_SIZE = 16;
export const RECORD_SIZE = 12;

/** Target segment payload before compression (the "about 1 MiB" of the design). */
export const SEGMENT_TARGET_BYTES = 1 << 20;
/** Average data chunks per segment: SEGMENT_TARGET_BYTES of 4 KiB chunks. */
export const SEGMENT_AVG_DATA_CHUNKS = SEGMENT_TARGET_BYTES / 4096;

/** A well-mixed 32-bit hash of (image, chunk index): the murmur3 finalizer. */
export function chunkIndexHash(target: 'ram' | 'disk', index: number): number {
  let h = (index ^ (target === 'ram' ? 0x9e3779b9 : 0x7f4a7c15)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Whether a segment ends after record `last`. Boundaries are content-defined by the chunk's own
 * index (it hashes to 0 mod the average), so a chunk added or removed elsewhere in a new version
 * does not shift every later cut: unchanged runs of chunks land in byte-identical segments, and a
 * registry that has them skips them (bench/publish measured v2/v1 bytes 0.91 with fixed-count cuts,
 * 0.34 simulated with these). Bounded to [avg/4, 4*avg] data chunks and SEGMENT_MAX_RECORDS.
 */
export function endsSegment(target: 'ram' | 'disk', last: ChunkRecord, dataChunks: number, records: number): boolean {
  if (records >= SEGMENT_MAX_RECORDS || dataChunks >= 4 * SEGMENT_AVG_DATA_CHUNKS) return true;
  return dataChunks >= SEGMENT_AVG_DATA_CHUNKS / 4 && hasPayload(last.encoding)
    && chunkIndexHash(target, last.index) % SEGMENT_AVG_DATA_CHUNKS === 0;
}

/** How a changed chunk is stored. The numeric values are the on-disk record codes. */
export enum Encoding {
  Zero = 0,      // all zero bytes
  BaseRam = 1,   // same bytes as base RAM page `ref`
  BaseDisk = 2,  // same bytes as base disk chunk `ref`
  Self = 3,      // same bytes as launch chunk `ref` of image `refTarget` (stored earlier in this overlay)
  Raw = 4,       // 4096 payload bytes
  Xor = 5,       // 4096 payload bytes XOR the base chunk at the same offset of the same image
}

export const TARGET_CODES: Record<Target, number> = { ram: 0, disk: 1 };

export function hasPayload(e: Encoding): boolean {
  return e === Encoding.Raw || e === Encoding.Xor;
}

export interface ChunkRecord {
  encoding: Encoding;
  index: number;      // chunk index in the launch image of the segment's target
  ref: number;        // source chunk index for BaseRam/BaseDisk/Self, else 0
  refTarget: Target;  // image of `ref` for Self, else 'ram'
}

/** Per image: how many changed chunks took each encoding, and where the copies came from. */
export interface TargetBreakdown {
  chunks: number;                       // changed chunks of this image
  encodings: Record<EncodingName, number>;
  selfFrom: Record<Target, number>;     // Self records by the image of the earlier copy
  payloadBytes: number;                 // raw + xor payload bytes (before compression)
  segmentRawBytes: number;              // decompressed segment bytes (records + payload)
  compressedBytes: number;              // compressed segment bytes
  segments: number;
}

export interface SegmentEntry {
  // "sha256:<hex>" of the compressed bytes: the segment's name. In an xz manifest (segments stored in
  // compression units) a segment has no compressed bytes of its own: digest = rawDigest, size = rawSize.
  digest: string;
  kind: 'chunks' | 'device-state';
  target?: Target;                      // for kind "chunks"
  size: number;                         // compressed bytes
  rawSize: number;                      // decompressed bytes
  /** "sha256:<hex>" of the decompressed bytes: names the content whatever the compression (overlay ID). */
  rawDigest?: string;
  records?: number;                     // for kind "chunks"
  chunks?: Array<[number, number]>;     // for kind "chunks": [first index, count] runs, ascending
}

/** The launch VM's configuration (its base's) and the guest ports its back-end serves. */
export type OverlayVmConfig = VmConfig & { ports?: number[] };

export interface OverlayManifest {
  format: typeof FORMAT_NAME;
  version: typeof FORMAT_VERSION;
  baseId: string;
  chunkSize: typeof CHUNK_SIZE;
  ram: { size: number };                // bytes of the launch RAM image (equals the base's)
  disk: { size: number };               // virtual size of the launch disk
  base: { ramSize: number; diskSize: number };
  compression: Compression;
  vmConfig: OverlayVmConfig;
  segments: SegmentEntry[];
  breakdown: Record<Target, TargetBreakdown> & { deviceStateBytes: number };
  /**
   * A child overlay: `id` names its parent overlay, `depth` its hops to the root (1..MAX_CHAIN_DEPTH).
   * Its records are then against the parent's launch images ("base" in every encoding means them,
   * and `base` holds their sizes); `baseId` stays the real base's. The overlay ID covers the field.
   */
  parent?: { id: string; depth: number };
}

/**
 * A compression unit of an xz manifest: the next `segments` segments of the manifest (one image, or
 * the device state), their decompressed bytes back to back, compressed as one xz stream. The units
 * are what the container and an OCI artifact store.
 */
export interface CompressionUnit {
  digest: string;                       // "sha256:<hex>" of the compressed bytes
  size: number;                         // compressed bytes
  rawSize: number;                      // sum of its segments' rawSize
  segments: number;                     // how many consecutive manifest segments it holds
}

export type Compression = { algorithm: 'zstd'; level: number } | { algorithm: 'xz'; level: number; units: CompressionUnit[] };

/** What the container and a registry store, in order: each segment (zstd) or each unit (xz). */
export function storedBlobs(m: OverlayManifest): Array<{ digest: string; size: number }> {
  return m.compression.algorithm === 'xz' ? m.compression.units.map(({ digest, size }) => ({ digest, size })) : m.segments.map(({ digest, size }) => ({ digest, size }));
}

/** The container version a manifest is stored under (units need version 2; old readers refuse it). */
export function containerVersionOf(m: OverlayManifest): number {
  return m.compression.algorithm === 'xz' ? CONTAINER_VERSION_UNITS : CONTAINER_VERSION_SEGMENTS;
}

export function emptyBreakdown(): TargetBreakdown {
  return {
    chunks: 0,
    encodings: { zero: 0, baseRam: 0, baseDisk: 0, self: 0, raw: 0, xor: 0 },
    selfFrom: { ram: 0, disk: 0 },
    payloadBytes: 0, segmentRawBytes: 0, compressedBytes: 0, segments: 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON: sorted keys, no whitespace, integers only for numbers. Same manifest, same bytes.

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new CloudletError('BadInput', `manifest holds a non-finite number`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  throw new CloudletError('BadInput', `manifest holds a value of type ${typeof value}`);
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function segmentName(compressed: Uint8Array): string {
  return `sha256:${sha256Hex(compressed)}`;
}

/**
 * The overlay ID names the content, not its compression. When every segment carries `rawDigest`
 * (every overlay written since issue 13): SHA-256 of "cloudlet-overlay-content/1\n" + the canonical
 * JSON of the manifest without what compression decides (`compression`, each segment's `digest`
 * and `size`, each breakdown's `compressedBytes`). A build-profile overlay and its wire-profile
 * re-compression therefore have the same ID. Older manifests (no rawDigest): SHA-256 of the
 * manifest bytes, as before.
 */
export function overlayIdOf(manifest: OverlayManifest, manifestBytes: Uint8Array): string {
  if (!manifest.segments.length || !manifest.segments.every((s) => typeof s.rawDigest === 'string')) return sha256Hex(manifestBytes);
  return sha256Hex(`cloudlet-overlay-content/1\n${canonicalJson(contentView(manifest))}`);
}

/** The manifest without its compression-dependent fields (what the overlay ID hashes). */
export function contentView(m: OverlayManifest): Record<string, unknown> {
  const { compression: _c, segments, breakdown, ...rest } = m;
  const noCompressed = ({ compressedBytes: _b, ...t }: TargetBreakdown) => t;
  return {
    ...rest,
    segments: segments.map(({ digest: _d, size: _s, ...seg }) => seg),
    breakdown: { ram: noCompressed(breakdown.ram), disk: noCompressed(breakdown.disk), deviceStateBytes: breakdown.deviceStateBytes },
  };
}

export function encodeContainerHeader(manifestBytes: Uint8Array, version: number = CONTAINER_VERSION_SEGMENTS): Buffer {
  const h = Buffer.alloc(CONTAINER_HEADER_SIZE);
  CONTAINER_MAGIC.copy(h, 0);
  h.writeUInt32BE(version, 8);
  h.writeUInt32BE(manifestBytes.length, 12);
  return h;
}

/** Parses the 16-byte container header; returns the manifest length (decodeContainerHead: and the version). */
export function decodeContainerHeader(h: Buffer): number {
  return decodeContainerHead(h).manifestLength;
}

export function decodeContainerHead(h: Buffer): { version: number; manifestLength: number } {
  if (h.length < CONTAINER_HEADER_SIZE) {
    throw new CloudletError('Corrupt', `overlay file is truncated: ${h.length} bytes, shorter than its ${CONTAINER_HEADER_SIZE}-byte header`);
  }
  if (!h.subarray(0, 8).equals(CONTAINER_MAGIC)) {
    throw new CloudletError('BadInput', 'not a cloudlet overlay: the file does not start with "CLDOVRLY"');
  }
  const version = h.readUInt32BE(8);
  if (version !== CONTAINER_VERSION_SEGMENTS && version !== CONTAINER_VERSION_UNITS) {
    throw new CloudletError('BadInput', `overlay container version ${version} is not supported (this build reads versions ${CONTAINER_VERSION_SEGMENTS} and ${CONTAINER_VERSION_UNITS}); a newer cloudlet wrote it`);
  }
  const len = h.readUInt32BE(12);
  if (len === 0 || len > LIMITS.manifestBytes) {
    throw new CloudletError('Corrupt', `overlay manifest length ${len} is outside 1..${LIMITS.manifestBytes} bytes`);
  }
  return { version, manifestLength: len };
}

/** A container's version must be the one its manifest is stored under. */
export function checkContainerVersion(version: number, m: OverlayManifest, what: string): void {
  if (version !== containerVersionOf(m)) {
    throw new CloudletError('Corrupt', `${what}: container version ${version} does not match its ${m.compression.algorithm} manifest (needs version ${containerVersionOf(m)})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Chunk segments (decompressed): header, records, then the payload of every Raw/Xor record in order.

export function encodeSegment(records: ChunkRecord[], payload: Buffer[]): Buffer {
  const dataCount = payload.length;
  const out = Buffer.alloc(SEGMENT_HEADER_SIZE + records.length * RECORD_SIZE + dataCount * CHUNK_SIZE);
  SEGMENT_MAGIC.copy(out, 0);
  out.writeUInt32LE(FORMAT_VERSION, 4);
  out.writeUInt32LE(records.length, 8);
  out.writeUInt32LE(dataCount, 12);
  let p = SEGMENT_HEADER_SIZE;
  for (const r of records) {
    out[p] = r.encoding;
    out[p + 1] = TARGET_CODES[r.refTarget];
    out.writeUInt32LE(r.index, p + 4);
    out.writeUInt32LE(r.ref, p + 8);
    p += RECORD_SIZE;
  }
  for (const d of payload) { d.copy(out, p); p += CHUNK_SIZE; }
  return out;
}

export interface DecodedSegment {
  records: ChunkRecord[];
  /** Offset in the segment buffer of each record's payload, -1 for records without one. */
  payloadOffsets: Int32Array;
}

/** Parses a decompressed chunk segment; checks its own structure only (bounds are checked by the caller). */
export function decodeSegment(buf: Buffer, name: string): DecodedSegment {
  const bad = (why: string) => new CloudletError('Corrupt', `segment ${name} is malformed: ${why}`);
  if (buf.length < SEGMENT_HEADER_SIZE || !buf.subarray(0, 4).equals(SEGMENT_MAGIC)) throw bad('no segment header');
  if (buf.readUInt32LE(4) !== FORMAT_VERSION) throw bad(`version ${buf.readUInt32LE(4)}`);
  const n = buf.readUInt32LE(8);
  const dataCount = buf.readUInt32LE(12);
  if (n > SEGMENT_MAX_RECORDS || dataCount > n) throw bad(`${n} records, ${dataCount} with data`);
  if (buf.length !== SEGMENT_HEADER_SIZE + n * RECORD_SIZE + dataCount * CHUNK_SIZE) {
    throw bad(`${buf.length} bytes where ${n} records and ${dataCount} data chunks need ${SEGMENT_HEADER_SIZE + n * RECORD_SIZE + dataCount * CHUNK_SIZE}`);
  }
  const records: ChunkRecord[] = new Array(n);
  const payloadOffsets = new Int32Array(n).fill(-1);
  let data = SEGMENT_HEADER_SIZE + n * RECORD_SIZE;
  let seen = 0;
  for (let i = 0, p = SEGMENT_HEADER_SIZE; i < n; i++, p += RECORD_SIZE) {
    const encoding = buf[p] as Encoding;
    const rt = buf[p + 1];
    if (encoding > Encoding.Xor) throw bad(`record ${i} has unknown encoding ${encoding}`);
    if (rt > 1) throw bad(`record ${i} has unknown source image ${rt}`);
    records[i] = { encoding, index: buf.readUInt32LE(p + 4), ref: buf.readUInt32LE(p + 8), refTarget: rt === 1 ? 'disk' : 'ram' };
    if (hasPayload(encoding)) {
      if (++seen > dataCount) throw bad('more data records than declared');
      payloadOffsets[i] = data;
      data += CHUNK_SIZE;
    }
  }
  if (seen !== dataCount) throw bad(`declares ${dataCount} data chunks, records name ${seen}`);
  return { records, payloadOffsets };
}

/** [first, count] runs of an ascending list of indices. */
export function toRuns(indices: ArrayLike<number>): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < indices.length; i++) {
    const x = indices[i];
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === x) last[1]++;
    else runs.push([x, 1]);
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------
// Manifest validation: everything that does not need the base or the segments' bytes.

const HEX64 = /^[0-9a-f]{64}$/;
const SEGMENT_DIGEST = /^sha256:[0-9a-f]{64}$/;

function isInt(x: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
}

/** Names that end up in file names or URLs must not be able to walk a path. */
function checkName(what: string, value: unknown, pattern: RegExp, doc = 'overlay manifest'): void {
  if (typeof value !== 'string') throw new CloudletError('BadInput', `${doc}: ${what} is missing or not a string`);
  if (/[/\\]|\.\.|\0/.test(value)) {
    throw new CloudletError('BadInput', `${doc}: ${what} ${JSON.stringify(value.slice(0, 80))} is a path-like name (it contains "/", "\\", ".." or NUL); refused`);
  }
  if (!pattern.test(value)) throw new CloudletError('BadInput', `${doc}: ${what} ${JSON.stringify(value.slice(0, 80))} is not of the form ${pattern.source}`);
}

/** Checks the manifest's shape and internal consistency; returns it typed. Throws BadInput/Corrupt. */
export function validateManifest(raw: unknown): OverlayManifest {
  const bad = (why: string) => new CloudletError('BadInput', `overlay manifest: ${why}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not a JSON object');
  checkManifestSchema(raw);
  const m = raw as Record<string, unknown>;
  if (m.format !== FORMAT_NAME) throw bad(`format is ${JSON.stringify(m.format)}, expected "${FORMAT_NAME}"`);
  if (m.version !== FORMAT_VERSION) throw bad(`version ${JSON.stringify(m.version)} is not supported (expected ${FORMAT_VERSION})`);
  checkName('baseId', m.baseId, HEX64);
  if (m.chunkSize !== CHUNK_SIZE) throw bad(`chunkSize ${JSON.stringify(m.chunkSize)} is not ${CHUNK_SIZE}`);
  const ram = m.ram as { size?: unknown } | undefined;
  const disk = m.disk as { size?: unknown } | undefined;
  const base = m.base as { ramSize?: unknown; diskSize?: unknown } | undefined;
  if (!ram || !isInt(ram.size, CHUNK_SIZE, LIMITS.ramBytes) || ram.size % CHUNK_SIZE) throw bad(`ram.size must be a multiple of ${CHUNK_SIZE} up to ${LIMITS.ramBytes}`);
  if (!disk || !isInt(disk.size, 0, LIMITS.diskBytes)) throw bad(`disk.size must be an integer up to ${LIMITS.diskBytes}`);
  if (!base || !isInt(base.ramSize, 0, LIMITS.ramBytes) || !isInt(base.diskSize, 0, LIMITS.diskBytes)) throw bad('base sizes are missing or out of range');
  const comp = m.compression as { algorithm?: unknown; level?: unknown; units?: unknown } | undefined;
  if (!comp || !((comp.algorithm === 'zstd' && isInt(comp.level, -131072, 22) && comp.units === undefined) || (comp.algorithm === 'xz' && isInt(comp.level, 0, 9) && comp.units !== undefined))) {
    throw bad('compression must be {algorithm: "zstd", level} or {algorithm: "xz", level 0..9, units}');
  }
  if (!Array.isArray(m.segments) || m.segments.length > LIMITS.segments) throw bad('segments must be a list');
  const chunkLimit: Record<Target, number> = { ram: ram.size / CHUNK_SIZE, disk: Math.ceil(disk.size / CHUNK_SIZE) };
  const deviceStates = checkSegmentEntries(m.segments as unknown[], chunkLimit, 'overlay manifest');
  if (deviceStates !== 1) throw bad(`expected exactly one device-state segment, found ${deviceStates}`);
  const typed = m as unknown as OverlayManifest;
  if (typed.vmConfig.ramBytes !== ram.size) throw bad(`vmConfig.ramBytes ${typed.vmConfig.ramBytes} differs from ram.size ${ram.size}`);
  if (typed.compression.algorithm === 'xz') checkUnits(typed, bad);
  checkBreakdown(typed, bad);
  return typed;
}

/**
 * An xz manifest's units: each holds consecutive segments of one image (or the device state alone),
 * together all of them in order, rawSize equal to its segments' and within the limits; a segment's
 * digest and size are its content's (it has no compressed bytes of its own).
 */
function checkUnits(m: OverlayManifest, bad: (why: string) => CloudletError): void {
  if (m.compression.algorithm !== 'xz') return;
  checkCompressionUnits(m.compression.units, m.segments, bad);
}

/**
 * The rules of checkUnits for a list of units over a list of segments (an xz manifest's, or a handoff
 * round's that carries units): consecutive segments of one image each, all of them in order, sizes
 * within the limits, each segment named by its content.
 */
export function checkCompressionUnits(units: CompressionUnit[], segments: SegmentEntry[], bad: (why: string) => CloudletError): void {
  const m = { segments };
  const names = new Set<string>();
  let next = 0;
  for (const [i, u] of units.entries()) {
    if (names.has(u.digest)) throw bad(`compression unit ${u.digest} is listed twice`);
    names.add(u.digest);
    if (u.size > LIMITS.unitBytes) throw bad(`compression unit ${i} is ${u.size} bytes, past the limit of ${LIMITS.unitBytes}`);
    if (u.rawSize > LIMITS.unitRawBytes) throw bad(`compression unit ${i} declares ${u.rawSize} decompressed bytes, past the limit of ${LIMITS.unitRawBytes} (refused as a possible decompression bomb)`);
    if (next + u.segments > m.segments.length) throw bad(`compression unit ${i} holds segments past the end of the segment list`);
    const held = m.segments.slice(next, next + u.segments);
    next += u.segments;
    const key = (s: SegmentEntry) => (s.kind === 'device-state' ? 'device-state' : s.target);
    if (held.some((s) => key(s) !== key(held[0])) || (key(held[0]) === 'device-state' && held.length !== 1)) throw bad(`compression unit ${i} mixes images`);
    const raw = held.reduce((n, s) => n + s.rawSize, 0);
    if (raw !== u.rawSize) throw bad(`compression unit ${i} declares ${u.rawSize} decompressed bytes, its segments make ${raw}`);
    for (const s of held) {
      if (s.rawDigest === undefined || s.digest !== s.rawDigest || s.size !== s.rawSize) throw bad(`segment ${s.digest} of an xz manifest must have digest = rawDigest and size = rawSize`);
    }
  }
  if (next !== m.segments.length) throw bad(`the compression units hold ${next} of ${m.segments.length} segments`);
}

/**
 * What a schema cannot say about a list of segment entries (an overlay manifest's, a handoff
 * round's): digests unique, sizes in range, chunk runs inside the images (`chunkLimit` chunks) and
 * ascending per image (each chunk stored once), run totals equal to the record counts. Runs are
 * checked as numbers, never expanded. Returns the number of device-state segments.
 */
export function checkSegmentEntries(segments: unknown[], chunkLimit: Record<Target, number>, what: string): number {
  const bad = (why: string) => new CloudletError('BadInput', `${what}: ${why}`);
  const lastIndex: Record<Target, number> = { ram: -1, disk: -1 };
  let deviceStates = 0;
  const names = new Set<string>();
  for (const [i, s] of segments.entries()) {
    if (typeof s !== 'object' || s === null) throw bad(`segment ${i} is not an object`);
    const seg = s as Record<string, unknown>;
    checkName(`segment ${i} digest`, seg.digest, SEGMENT_DIGEST, what);
    if (seg.rawDigest !== undefined) checkName(`segment ${i} rawDigest`, seg.rawDigest, SEGMENT_DIGEST, what);
    if (names.has(seg.digest as string)) throw bad(`segment ${seg.digest} is listed twice`);
    names.add(seg.digest as string);
    if (!isInt(seg.size, 1, LIMITS.segmentBytes)) throw bad(`segment ${seg.digest} size ${JSON.stringify(seg.size)} is outside 1..${LIMITS.segmentBytes}`);
    if (!isInt(seg.rawSize, 0, LIMITS.segmentRawBytes)) {
      throw bad(`segment ${seg.digest} declares ${JSON.stringify(seg.rawSize)} decompressed bytes, past the limit of ${LIMITS.segmentRawBytes} (refused as a possible decompression bomb)`);
    }
    if (seg.kind === 'device-state') { deviceStates++; continue; }
    if (seg.kind !== 'chunks') throw bad(`segment ${seg.digest} has unknown kind ${JSON.stringify(seg.kind)}`);
    if (seg.target !== 'ram' && seg.target !== 'disk') throw bad(`segment ${seg.digest} target must be "ram" or "disk"`);
    const target = seg.target;
    if (!isInt(seg.records, 1, SEGMENT_MAX_RECORDS) || !Array.isArray(seg.chunks) || seg.chunks.length > SEGMENT_MAX_RECORDS) throw bad(`segment ${seg.digest} has no record count or chunk list`);
    let count = 0;
    for (const run of seg.chunks as unknown[]) {
      if (!Array.isArray(run) || run.length !== 2 || !isInt(run[0]) || !isInt(run[1], 1, SEGMENT_MAX_RECORDS)) throw bad(`segment ${seg.digest} has a malformed chunk run ${JSON.stringify(run)}`);
      const [first, n] = run as [number, number];
      if (first + n > chunkLimit[target]) {
        throw new CloudletError('Corrupt', `${what}: segment ${seg.digest} names ${target} chunks ${first}..${first + n - 1}, outside the ${target} image (${chunkLimit[target]} chunks)`);
      }
      // Chunks are listed in ascending order: each chunk is stored once.
      if (first <= lastIndex[target]) throw bad(`segment ${seg.digest} lists ${target} chunk ${first} out of order or twice`);
      lastIndex[target] = first + n - 1;
      count += n;
    }
    if (count !== seg.records) throw bad(`segment ${seg.digest} lists ${count} chunks but declares ${seg.records} records`);
  }
  return deviceStates;
}

/** Stored bytes of one image's segments (or of the device state): their own (zstd) or their units' (xz). */
export function compressedBytesOf(m: OverlayManifest, t: Target | 'device-state'): number {
  const holds = (s: SegmentEntry | undefined) => (t === 'device-state' ? s?.kind === 'device-state' : s?.kind === 'chunks' && s.target === t);
  if (m.compression.algorithm !== 'xz') return m.segments.filter(holds).reduce((n, s) => n + s.size, 0);
  let next = 0, total = 0;
  for (const u of m.compression.units) {
    const first = m.segments[next];
    next += u.segments;
    if (holds(first)) total += u.size;
  }
  return total;
}

/** The breakdown is what `overlay info` shows: its totals must be the segments' (a lying manifest is refused). */
function checkBreakdown(m: OverlayManifest, bad: (why: string) => CloudletError): void {
  for (const t of TARGETS) {
    const b = m.breakdown[t];
    const segs = m.segments.filter((s) => s.kind === 'chunks' && s.target === t);
    const sum = (f: (s: SegmentEntry) => number) => segs.reduce((n, s) => n + f(s), 0);
    const encoded = ENCODING_NAMES.reduce((n, e) => n + b.encodings[e], 0);
    const expect: Array<[string, number, number]> = [
      ['chunks', b.chunks, sum((s) => s.records!)],
      ['segments', b.segments, segs.length],
      ['segmentRawBytes', b.segmentRawBytes, sum((s) => s.rawSize)],
      ['compressedBytes', b.compressedBytes, compressedBytesOf(m, t)],
      ['payloadBytes', b.payloadBytes, (b.encodings.raw + b.encodings.xor) * CHUNK_SIZE],
      ['encodings (total)', encoded, b.chunks],
      ['selfFrom (total)', b.selfFrom.ram + b.selfFrom.disk, b.encodings.self],
    ];
    for (const [field, got, want] of expect) {
      if (got !== want) throw bad(`breakdown.${t}.${field} is ${got}, the segments make it ${want}`);
    }
  }
  const ds = m.segments.find((s) => s.kind === 'device-state')!;
  if (m.breakdown.deviceStateBytes !== ds.rawSize) throw bad(`breakdown.deviceStateBytes is ${m.breakdown.deviceStateBytes}, the device-state segment holds ${ds.rawSize}`);
}

/** Expands a segment's runs into the ascending list of chunk indices. */
export function expandRuns(runs: Array<[number, number]>): number[] {
  const out: number[] = [];
  for (const [first, n] of runs) for (let k = 0; k < n; k++) out.push(first + k);
  return out;
}
