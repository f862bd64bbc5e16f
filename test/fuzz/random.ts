/**
 * Seeded randomness for fuzz tests: the same seed gives the same cases, so a failure replays with
 * FUZZ_SEED=<seed>. The seed is the environment's or a fresh one, and every suite prints it.
 */

/** mulberry32: small, fast, good enough to spread test cases. */
export class Random {
  private state: number;
  constructor(readonly seed: number) { this.state = seed >>> 0; }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number { return min + Math.floor(this.next() * (max - min + 1)); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(xs: readonly T[]): T { return xs[Math.floor(this.next() * xs.length)]; }
}

/** FUZZ_SEED from the environment, else a new one. */
export function fuzzSeed(): number {
  const s = process.env.FUZZ_SEED;
  return s !== undefined && /^\d+$/.test(s) ? Number(s) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
}
