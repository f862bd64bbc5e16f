/**
 * Decides how each changed 4 KiB chunk is stored: zero, a copy of a base RAM page or base disk
 * chunk, a copy of a chunk stored earlier in this overlay, or literal bytes (raw, or XOR against the
 * base chunk at the same offset when that leaves mostly zeros). Keeps the overlay's own digests so
 * later chunks (RAM pages that are the page cache of newly written files) become copies.
 */
import { createHash } from 'crypto';
import { ChunkIndex } from './chunkIndex';
import { CHUNK_SIZE, Encoding, Target } from './format';

const SRC_BASE_RAM = 0, SRC_BASE_DISK = 1, SRC_SELF = 2;

export const ZERO_CHUNK = Buffer.alloc(CHUNK_SIZE);
export const ZERO_DIGEST = createHash('sha256').update(ZERO_CHUNK).digest();

/** 32-bit view of a 4 KiB chunk (copied when the buffer is not 4-byte aligned). */
function words(b: Buffer): Uint32Array {
  if (b.byteOffset % 4) b = Buffer.from(b);
  return new Uint32Array(b.buffer, b.byteOffset, CHUNK_SIZE / 4);
}

export interface EncodedChunk {
  encoding: Encoding;
  ref: number;
  refTarget: Target;
  payload?: Buffer; // Raw or Xor bytes (a fresh buffer)
}

/** Same-offset base chunk reader for the XOR decision; returns undefined past the base image. */
export type BaseChunkReader = (target: Target, index: number, out: Buffer) => Buffer | undefined;

/**
 * The base's chunk digests indexed (zero chunks left out): built once and shared, read-only, by the
 * encoders of a handoff's successive rounds (RoundEncoder), instead of indexing 1.3 M digests again
 * for every round (100 ms idle, seconds on a loaded host).
 */
export function indexBase(baseRamDigests: Buffer, baseDiskDigests: Buffer): ChunkIndex {
  const index = new ChunkIndex((baseRamDigests.length + baseDiskDigests.length) / 32);
  index.setList(SRC_BASE_RAM, baseRamDigests);
  index.addAll(SRC_BASE_RAM, ZERO_DIGEST);
  index.setList(SRC_BASE_DISK, baseDiskDigests);
  index.addAll(SRC_BASE_DISK, ZERO_DIGEST);
  return index;
}

/**
 * indexBase in steps of `slice` digests: the caller runs the rest of its event loop between steps
 * (a handoff's source builds it while round 0 streams, whose writes need the loop's turns). The
 * same inserts in the same order as indexBase: the same index.
 */
export function* indexBaseInSlices(baseRamDigests: Buffer, baseDiskDigests: Buffer, slice = 65536): Generator<void, ChunkIndex> {
  const index = new ChunkIndex((baseRamDigests.length + baseDiskDigests.length) / 32);
  for (const [source, list] of [[SRC_BASE_RAM, baseRamDigests], [SRC_BASE_DISK, baseDiskDigests]] as const) {
    index.setList(source, list);
    for (let from = 0, n = list.length / 32; from < n; from += slice) {
      for (let i = from; i < Math.min(n, from + slice); i++) index.add(source, i, ZERO_DIGEST);
      yield;
    }
  }
  return index;
}

export class ChunkEncoder {
  /** The base's digests (indexBase; a hit there wins over this overlay's own chunks, as it was indexed first). */
  private readonly index: ChunkIndex;
  /** This overlay's own chunks (remember()). */
  private readonly selfIndex: ChunkIndex;
  private selfDigests: Buffer;
  private selfTargets: Uint8Array;
  private selfIndices: Uint32Array;
  private selfCount = 0;
  private readonly baseRamDigests: Buffer;
  private readonly baseDiskDigests: Buffer;
  private readonly readBase: BaseChunkReader;
  private readonly scratch = Buffer.alloc(CHUNK_SIZE);

  /** `baseIndex`: indexBase() of these same digest lists, when already built (shared). */
  constructor(baseRamDigests: Buffer, baseDiskDigests: Buffer, readBase: BaseChunkReader, baseIndex?: ChunkIndex) {
    this.baseRamDigests = baseRamDigests;
    this.baseDiskDigests = baseDiskDigests;
    this.readBase = readBase;
    this.index = baseIndex ?? indexBase(baseRamDigests, baseDiskDigests);
    this.selfDigests = Buffer.alloc(32 * 4096);
    this.selfTargets = new Uint8Array(4096);
    this.selfIndices = new Uint32Array(4096);
    this.selfIndex = new ChunkIndex(8192);
    this.selfIndex.setList(SRC_SELF, this.selfDigests);
  }

  /** Base digest of chunk `index` of `target` (for "unchanged?"), or undefined past the base. */
  baseDigest(target: Target, index: number): Buffer | undefined {
    const list = target === 'ram' ? this.baseRamDigests : this.baseDiskDigests;
    return index * 32 < list.length ? list.subarray(index * 32, index * 32 + 32) : undefined;
  }

  /** Encodes a changed chunk; `digest` is SHA-256 of `data`. Call in the overlay's chunk order. */
  encode(target: Target, index: number, data: Buffer, digest: Buffer): EncodedChunk {
    if (digest.equals(ZERO_DIGEST)) return { encoding: Encoding.Zero, ref: 0, refTarget: 'ram' };
    const hit = this.index.find(digest) ?? this.selfIndex.find(digest);
    if (hit) {
      if (hit.source === SRC_BASE_RAM) return { encoding: Encoding.BaseRam, ref: hit.index, refTarget: 'ram' };
      if (hit.source === SRC_BASE_DISK) return { encoding: Encoding.BaseDisk, ref: hit.index, refTarget: 'disk' };
      return { encoding: Encoding.Self, ref: this.selfIndices[hit.index], refTarget: this.selfTargets[hit.index] ? 'disk' : 'ram' };
    }
    this.remember(target, index, digest);
    return this.literal(target, index, data);
  }

  private remember(target: Target, index: number, digest: Buffer): void {
    if ((this.selfCount + 1) * 32 > this.selfDigests.length) {
      const grown = Buffer.alloc(this.selfDigests.length * 2);
      this.selfDigests.copy(grown);
      this.selfDigests = grown;
      this.selfIndex.setList(SRC_SELF, grown);
      const t = new Uint8Array(this.selfTargets.length * 2); t.set(this.selfTargets); this.selfTargets = t;
      const i = new Uint32Array(this.selfIndices.length * 2); i.set(this.selfIndices); this.selfIndices = i;
    }
    const k = this.selfCount++;
    digest.copy(this.selfDigests, k * 32);
    this.selfTargets[k] = target === 'disk' ? 1 : 0;
    this.selfIndices[k] = index;
    this.selfIndex.add(SRC_SELF, k);
  }

  /**
   * Raw, or XOR against the same-offset base chunk when at least half of the 32-bit words are
   * unchanged and that gives more zero words than the raw bytes have: a kernel structure or an
   * ext4 bitmap with a few words changed becomes a run of zeros zstd stores almost for free.
   * Cheaper than compressing both ways, and it never makes a chunk bigger than raw.
   */
  private literal(target: Target, index: number, data: Buffer): EncodedChunk {
    const baseDigest = this.baseDigest(target, index);
    if (baseDigest && !baseDigest.equals(ZERO_DIGEST)) {
      const base = this.readBase(target, index, this.scratch);
      if (base) {
        const a = words(data), b = words(base);
        let same = 0, zeros = 0;
        for (let i = 0; i < a.length; i++) { if (a[i] === b[i]) same++; if (a[i] === 0) zeros++; }
        if (same * 2 >= a.length && same > zeros) {
          const out = Buffer.allocUnsafe(CHUNK_SIZE);
          const o = new Uint32Array(out.buffer, out.byteOffset, CHUNK_SIZE / 4);
          for (let i = 0; i < a.length; i++) o[i] = a[i] ^ b[i];
          return { encoding: Encoding.Xor, ref: 0, refTarget: 'ram', payload: out };
        }
      }
    }
    return { encoding: Encoding.Raw, ref: 0, refTarget: 'ram', payload: Buffer.from(data) };
  }
}
