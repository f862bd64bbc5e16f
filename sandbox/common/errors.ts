/**
 * One error type for everything the sandbox refuses. `code` is stable (tests and the API map it),
 * `message` says what is wrong in the user's terms, `hint` says what to do about it.
 * The daemon maps `status` to the HTTP status of an OpenStack error body.
 */
export type ErrorCode =
  | 'BadInput'       // malformed or invalid request / file (400)
  | 'NotFound'       // (404)
  | 'Conflict'       // state does not allow it, e.g. a second resume of a running sandbox (409)
  | 'Corrupt'        // a digest or size check failed: tampered or truncated data (400/422)
  | 'Mismatch'       // e.g. overlay for another base, CPU model the host cannot give (400)
  | 'Unauthorized'   // (401)
  | 'Forbidden'      // (403)
  | 'Unavailable'    // over capacity, a peer or device down (503)
  | 'MissingTool'    // a host program is missing (QEMU, qemu-img ...): hint has the apt command
  | 'Cancelled'
  | 'Timeout'
  | 'Internal';

const STATUS: Record<ErrorCode, number> = {
  BadInput: 400, NotFound: 404, Conflict: 409, Corrupt: 400, Mismatch: 400, Unauthorized: 401,
  Forbidden: 403, Unavailable: 503, MissingTool: 500, Cancelled: 499, Timeout: 504, Internal: 500,
};

export class CloudletError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly status: number;
  constructor(code: ErrorCode, message: string, opts: { hint?: string; status?: number; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'CloudletError';
    this.code = code;
    this.hint = opts.hint;
    this.status = opts.status ?? STATUS[code];
  }
}

export function isCloudletError(e: unknown, code?: ErrorCode): e is CloudletError {
  return e instanceof CloudletError && (code === undefined || e.code === code);
}

/** Message for humans: "what is wrong (hint)". */
export function describeError(e: unknown): string {
  if (e instanceof CloudletError) return e.hint ? `${e.message}\n  hint: ${e.hint}` : e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** Throws the standard Cancelled error when the signal fired; call between units of work. */
export function throwIfCancelled(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CloudletError('Cancelled', 'cancelled');
}
