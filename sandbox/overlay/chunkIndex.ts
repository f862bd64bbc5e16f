/**
 * Finds a 4 KiB chunk by its SHA-256 among millions (a 1 GiB RAM + 4 GiB disk base has 1.3 M).
 * Open addressing over typed arrays: the slot comes from digest bytes 0..3, a second 32-bit tag
 * (bytes 4..7) filters almost every false probe, and a hit is confirmed against the full 32-byte
 * digest kept in the caller's digest list. Chosen over sorted prefixes + binary search because
 * inserts stay O(1) (the overlay's own chunks are added while scanning) and a lookup touches one
 * or two cache lines instead of ~20.
 */

const EMPTY = 0xffffffff;

/** Where a digest was first seen: a digest list (`source`) and the chunk index in it. */
export interface ChunkRef { source: number; index: number }

export class ChunkIndex {
  private mask: number;
  private tags: Uint32Array;
  private sources: Uint8Array;
  private indices: Uint32Array;
  private count = 0;
  /** Digest lists by source id: 32 bytes per chunk, in chunk order. */
  private readonly lists: Buffer[] = [];

  constructor(expected = 1024) {
    let cap = 1024;
    while (cap < expected * 2) cap *= 2;
    this.mask = cap - 1;
    this.tags = new Uint32Array(cap);
    this.sources = new Uint8Array(cap);
    this.indices = new Uint32Array(cap).fill(EMPTY);
  }

  get size(): number { return this.count; }

  /**
   * Registers a digest list under a source id (its buffer is kept, not copied). Later sources
   * may grow (see setList) as the overlay's own chunks are added.
   */
  setList(source: number, digests: Buffer): void {
    this.lists[source] = digests;
  }

  private digestAt(source: number, index: number): Buffer {
    return this.lists[source].subarray(index * 32, index * 32 + 32);
  }

  /** Adds chunk `index` of `source` unless an equal digest is already present (first one wins). */
  add(source: number, index: number, skip?: Buffer): boolean {
    const list = this.lists[source];
    const off = index * 32;
    if (skip && list.compare(skip, 0, 32, off, off + 32) === 0) return false;
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    return this.insert(list, off, source, index);
  }

  /** Adds every chunk of a registered list, skipping digests equal to `skip` (the zero chunk). */
  addAll(source: number, skip?: Buffer): void {
    const n = this.lists[source].length / 32;
    for (let i = 0; i < n; i++) this.add(source, i, skip);
  }

  private insert(list: Buffer, off: number, source: number, index: number): boolean {
    let slot = list.readUInt32LE(off) & this.mask;
    const tag = list.readUInt32LE(off + 4);
    for (;;) {
      const cur = this.indices[slot];
      if (cur === EMPTY) {
        this.tags[slot] = tag; this.sources[slot] = source; this.indices[slot] = index;
        this.count++;
        return true;
      }
      if (this.tags[slot] === tag && this.digestAt(this.sources[slot], cur).compare(list, off, off + 32) === 0) return false;
      slot = (slot + 1) & this.mask;
    }
  }

  /** Looks up the digest at `off` of `digests`. */
  find(digests: Buffer, off = 0): ChunkRef | undefined {
    let slot = digests.readUInt32LE(off) & this.mask;
    const tag = digests.readUInt32LE(off + 4);
    for (;;) {
      const cur = this.indices[slot];
      if (cur === EMPTY) return undefined;
      if (this.tags[slot] === tag) {
        const src = this.sources[slot];
        if (this.digestAt(src, cur).compare(digests, off, off + 32) === 0) return { source: src, index: cur };
      }
      slot = (slot + 1) & this.mask;
    }
  }

  private grow(): void {
    const old = { tags: this.tags, sources: this.sources, indices: this.indices };
    const cap = (this.mask + 1) * 2;
    this.mask = cap - 1;
    this.tags = new Uint32Array(cap);
    this.sources = new Uint8Array(cap);
    this.indices = new Uint32Array(cap).fill(EMPTY);
    this.count = 0;
    for (let s = 0; s < old.indices.length; s++) {
      const idx = old.indices[s];
      if (idx === EMPTY) continue;
      const src = old.sources[s];
      this.insert(this.lists[src], idx * 32, src, idx);
    }
  }
}
