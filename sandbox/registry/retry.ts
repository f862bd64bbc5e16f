/**
 * Bounded retries with exponential back-off for registry traffic. Only transient failures are
 * retried (connection refused/reset/cut, timeouts, 5xx, 429); TLS trust errors, 4xx and digest
 * mismatches are not, since trying again cannot fix them.
 */
import { CloudletError, throwIfCancelled } from '../common/errors';

export interface RetryPolicy {
  attempts: number;      // total tries, including the first
  baseDelayMs: number;   // first back-off
  maxDelayMs: number;    // cap per back-off
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseDelayMs: 250, maxDelayMs: 4000 };

/** An HTTP answer worth retrying (5xx, 429). */
export class TransientHttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENETDOWN', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'ERR_STREAM_PREMATURE_CLOSE',
]);

export function errorCode(e: unknown): string | undefined {
  for (let cur: any = e, i = 0; cur && i < 4; cur = cur.cause, i++) {
    if (typeof cur.code === 'string' && cur.code) return cur.code;
  }
  return undefined;
}

export function isNetworkError(e: unknown): boolean {
  const code = errorCode(e);
  return !!code && NETWORK_CODES.has(code);
}

export function isTransient(e: unknown): boolean {
  return e instanceof TransientHttpError || isNetworkError(e);
}

/** Short description of a transient failure for messages: "ECONNREFUSED" or "HTTP 503". */
export function describeTransient(e: unknown): string {
  if (e instanceof TransientHttpError) return `HTTP ${e.status}`;
  return errorCode(e) ?? (e instanceof Error ? e.message : String(e));
}

export function backoffDelay(policy: RetryPolicy, failures: number): number {
  const d = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (failures - 1));
  return Math.round(d * (0.75 + Math.random() * 0.5));   // jitter so parallel workers spread out
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CloudletError('Cancelled', 'cancelled'));
    const onAbort = () => { clearTimeout(t); reject(new CloudletError('Cancelled', 'cancelled')); };
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryContext {
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** Called before each back-off, e.g. to count retries or log. */
  onRetry?: (failure: unknown, attempt: number, delayMs: number) => void;
  /** What failed, for the final message, e.g. "download of sha256:ab12… from 127.0.0.1:5000". */
  what: string;
}

/** Runs `fn` until it succeeds, fails for good, or the attempts are used up (then a clear Unavailable). */
export async function withRetries<T>(ctx: RetryContext, fn: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    throwIfCancelled(ctx.signal);
    try {
      return await fn(attempt);
    } catch (e) {
      if (!isTransient(e)) throw e;
      if (attempt >= ctx.policy.attempts) throw giveUp(ctx.what, attempt, e);
      const delay = backoffDelay(ctx.policy, attempt);
      ctx.onRetry?.(e, attempt, delay);
      await sleep(delay, ctx.signal);
    }
  }
}

export function giveUp(what: string, attempts: number, last: unknown): CloudletError {
  return new CloudletError('Unavailable',
    `${what} failed after ${attempts} attempts with back-off (last error: ${describeTransient(last)})`,
    { hint: 'check that the registry is running and reachable, then try again', cause: last });
}
