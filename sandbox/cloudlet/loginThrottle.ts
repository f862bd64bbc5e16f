/**
 * Failed password logins counted per user name and per source address in a sliding window (the
 * embedded Keystone's lockout). Past the limit, logins of that name or from that address are
 * refused without looking at the password until the oldest failure leaves the window; the
 * refusal says when (Retry-After). Unknown names are counted like known ones, so the throttle
 * tells nothing about who exists. Memory is bounded: at most `limit` timestamps per key and
 * MAX_KEYS keys (the oldest keys go first).
 */
import * as net from 'net';

export interface LoginLimits {
  /** Failures of one user name within the window before its logins are refused. */
  perUser: number;
  /** Failures from one source address (IPv6: its /64) within the window. */
  perAddress: number;
  windowSeconds: number;
}

export const LOGIN_LIMITS: LoginLimits = { perUser: 5, perAddress: 20, windowSeconds: 300 };

const MAX_KEYS = 10_000;

/** The key of a source address: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64). */
export function addressKey(address: string): string {
  const v4 = address.replace(/^::ffff:/i, '');
  if (net.isIPv4(v4)) return v4;
  if (!net.isIPv6(address)) return address;
  const [head, tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':') + '::/64';
}

export class LoginThrottle {
  /** key -> failure times (ms), oldest first, at most the key's limit. */
  private failures = new Map<string, number[]>();

  constructor(readonly limits: LoginLimits = LOGIN_LIMITS, private now: () => number = Date.now) {}

  /** Seconds until a login of `user` from `address` is looked at again; 0 when it is now. */
  retryAfter(user: string, address: string): number {
    const wait = Math.max(this.wait(`u:${user}`, this.limits.perUser), this.wait(`a:${addressKey(address)}`, this.limits.perAddress));
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  }

  failed(user: string, address: string): void {
    this.add(`u:${user}`, this.limits.perUser);
    this.add(`a:${addressKey(address)}`, this.limits.perAddress);
  }

  /** A right password clears its user's failures (not the address's: one account is not the host). */
  succeeded(user: string): void {
    this.failures.delete(`u:${user}`);
  }

  private recent(key: string): number[] {
    const cutoff = this.now() - this.limits.windowSeconds * 1000;
    const list = (this.failures.get(key) ?? []).filter((t) => t > cutoff);
    if (list.length) this.failures.set(key, list); else this.failures.delete(key);
    return list;
  }

  private wait(key: string, limit: number): number {
    const list = this.recent(key);
    return list.length >= limit ? list[list.length - limit] + this.limits.windowSeconds * 1000 - this.now() : 0;
  }

  private add(key: string, limit: number): void {
    const list = this.recent(key);
    list.push(this.now());
    if (list.length > limit) list.splice(0, list.length - limit);
    this.failures.delete(key); // re-inserted last: Map order is then oldest activity first
    this.failures.set(key, list);
    while (this.failures.size > MAX_KEYS) this.failures.delete(this.failures.keys().next().value!);
  }
}
