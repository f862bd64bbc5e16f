/**
 * One error type for everything the sandbox refuses. `code` is stable (tests, the API and the
 * extension map it), `message` says what is wrong in the user's terms, `hint` says what to do.
 * The daemon maps `status` to the HTTP status of an OpenStack error body and sends code and hint
 * along (a `Fault`), so a client rebuilds the same error on its side of the wire.
 */
export const ERROR_CODES = [
  'BadInput',      // malformed or invalid request / file (400)
  'NotFound',      // (404)
  'Conflict',      // state does not allow it, e.g. a second resume of a running sandbox (409)
  'Corrupt',       // a digest or size check failed: tampered or truncated data (400)
  'Mismatch',      // e.g. overlay for another base, CPU model the host cannot give (400)
  'MissingBase',   // the base VM a request needs is not held here: import it first (400)
  'Unauthorized',  // (401)
  'Forbidden',     // (403), also "quota exceeded" as Nova answers it
  'RegistryRefused', // a registry refused the pull of an oci:// overlay (its login missing or wrong): 403, not the cloudlet's own refusal
  'Unavailable',   // over capacity, a peer or device down, a daemon not reachable (503)
  'Throttled',     // too many attempts (failed logins): try again after Retry-After seconds (429)
  'MissingTool',   // a host program is missing (QEMU, qemu-img ...): hint has the apt command
  'Untrusted',     // a peer's TLS certificate is refused: unknown CA, expired, other name, changed pin (502)
  'Cancelled',
  'Timeout',
  'Internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const STATUS: Record<ErrorCode, number> = {
  BadInput: 400, NotFound: 404, Conflict: 409, Corrupt: 400, Mismatch: 400, MissingBase: 400, Unauthorized: 401,
  Forbidden: 403, RegistryRefused: 403, Unavailable: 503, Throttled: 429, MissingTool: 500, Untrusted: 502, Cancelled: 499, Timeout: 504, Internal: 500,
};

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && (ERROR_CODES as readonly string[]).includes(x);
}

/** The code an HTTP status stands for when an answer carries none (a plain OpenStack service). */
export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400: case 405: case 406: case 413: case 415: case 416: return 'BadInput';
    case 401: return 'Unauthorized';
    case 403: return 'Forbidden';
    case 404: return 'NotFound';
    case 409: return 'Conflict';
    case 429: return 'Throttled';
    case 499: return 'Cancelled';
    case 502: case 503: return 'Unavailable';
    case 504: return 'Timeout';
    default: return status >= 400 && status < 500 ? 'BadInput' : 'Internal';
  }
}

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

/**
 * An error as it travels: in error bodies (key `cloudlet_error`, beside the service's OpenStack
 * fields), in job records and in server faults.
 */
export interface Fault { code: ErrorCode; message: string; hint?: string }

/** The fault of any thrown value; what is no CloudletError is Internal. */
export function faultOf(e: unknown): Fault {
  if (e instanceof CloudletError) return { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
  return { code: 'Internal', message: e instanceof Error ? e.message : String(e) };
}

/** The error a fault stands for, on the other side of the wire. */
export function errorOfFault(f: Fault, opts: { status?: number } = {}): CloudletError {
  return new CloudletError(f.code, f.message, { hint: f.hint, status: opts.status });
}
