/**
 * Password hashing with Node's scrypt (memory-hard, no native dependency). Stored form:
 * `scrypt$N$r$p$<salt b64>$<hash b64>` so parameters can be raised later without breaking old hashes.
 * Logins verify on libuv's thread pool (`passwordHasher.verify`), never on the event loop: one
 * scrypt takes tens of milliseconds of CPU, and 20 wrong passwords at once used to stall every
 * other request for most of a second. The synchronous forms are for start-up and the CLI only.
 */
import * as crypto from 'crypto';
import { CloudletError } from '../common/errors';

const N = 16384, R = 8, P = 1, KEYLEN = 32;
/** Hashes computed at once: the pool has 4 threads and file I/O needs some of them. */
const HASH_CONCURRENCY = 2;
/** Logins waiting for a hashing slot beyond this are turned away (503) instead of queued. */
const MAX_WAITING = 256;

export function hashPassword(password: string): string {
  const salt = crypto.randomBytes(16);
  const hash = crypto.scryptSync(password, salt, KEYLEN, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export function isPasswordHash(s: string): boolean {
  return /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(s);
}

function parse(stored: string) {
  const [, n, r, p, saltB64, hashB64] = stored.split('$');
  const expected = Buffer.from(hashB64, 'base64');
  return {
    salt: Buffer.from(saltB64, 'base64'), expected,
    opts: { N: Number(n), r: Number(r), p: Number(p), maxmem: 256 * Number(n) * Number(r) },
  };
}

const matches = (got: Buffer, expected: Buffer) => got.length === expected.length && crypto.timingSafeEqual(got, expected);

/** Start-up only (config sync): blocks the event loop. */
export function verifyPasswordSync(password: string, stored: string): boolean {
  if (!isPasswordHash(stored)) return false;
  const { salt, expected, opts } = parse(stored);
  return matches(crypto.scryptSync(password, salt, expected.length, opts), expected);
}

let running = 0;
const waiting: Array<() => void> = [];

async function slot<T>(work: () => Promise<T>): Promise<T> {
  if (running < HASH_CONCURRENCY) running++;
  else {
    if (waiting.length >= MAX_WAITING) throw new CloudletError('Unavailable', 'too many logins at once; try again in a moment');
    await new Promise<void>((resolve) => waiting.push(resolve)); // the slot is handed over, still counted
  }
  try { return await work(); } finally {
    const next = waiting.shift();
    if (next) next(); else running--;
  }
}

/** What logins use; an object so a test can see every call (unknown users must cost the same). */
export const passwordHasher = {
  /** Whether `password` matches `stored`, computed off the event loop. */
  verify(password: string, stored: string): Promise<boolean> {
    if (!isPasswordHash(stored)) return Promise.resolve(false);
    const { salt, expected, opts } = parse(stored);
    return slot(() => new Promise<boolean>((resolve, reject) => {
      crypto.scrypt(password, salt, expected.length, opts, (err, got) => (err ? reject(err) : resolve(matches(got, expected))));
    }));
  },
};
