/**
 * How an error is shown to the user: which kind, which words, which action buttons. Pure, so unit
 * tests check the bad cases (daemon unreachable, wrong credentials, missing base, cancelled).
 */
export type ErrorKind = 'unreachable' | 'unauthorized' | 'registryRefused' | 'untrusted' | 'missingBase' | 'cancelled' | 'missingTool' | 'conflict' | 'notFound' | 'other';

export interface ShownError {
  kind: ErrorKind;
  message: string;
  /** Buttons, in order. 'Retry' re-runs the command; 'Update Credentials' opens the credentials flow. */
  actions: Array<'Retry' | 'Update Credentials' | 'Show Log' | 'Open Settings' | 'Trust Certificate...'>;
  severity: 'error' | 'warning' | 'info';
  /** Said in a modal dialog, not a toast (a changed certificate: someone may be in the middle). */
  modal?: boolean;
}

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'EPIPE']);

function field(e: unknown, k: string): unknown {
  return e && typeof e === 'object' ? (e as Record<string, unknown>)[k] : undefined;
}

function causeCodes(e: unknown): string[] {
  const out: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 5 && cur; i++) {
    const c = field(cur, 'code');
    if (typeof c === 'string') out.push(c);
    const errs = field(cur, 'errors');
    if (Array.isArray(errs)) for (const x of errs) { const cc = field(x, 'code'); if (typeof cc === 'string') out.push(cc); }
    cur = field(cur, 'cause');
  }
  return out;
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) {
    const hint = field(e, 'hint');
    return typeof hint === 'string' && hint ? `${e.message} (${hint})` : e.message;
  }
  return String(e);
}

/**
 * By codes only, never by words of a message: the CloudletError code (the daemon's, rebuilt by the
 * client), Node's network error codes along the cause chain, and the HTTP status as a last resort.
 */
export function classifyError(e: unknown, where?: string): ShownError {
  const codes = causeCodes(e);
  const status = Number(field(e, 'status') ?? field(e, 'statusCode') ?? 0);
  const msg = errorMessage(e);
  const at = where ? ` (${where})` : '';
  if (codes.includes('Cancelled') || field(e, 'name') === 'AbortError') {
    return { kind: 'cancelled', message: `Cancelled${at}.`, actions: [], severity: 'info' };
  }
  if (codes.includes('Untrusted')) {
    // sandbox/client's CertificateError: `problem` says why, `presented` is the certificate shown.
    if (field(e, 'problem') === 'changed') {
      return { kind: 'untrusted', message: `Certificate REFUSED${at}: ${msg}`, actions: ['Show Log'], severity: 'error', modal: true };
    }
    const askable = field(e, 'problem') === 'unknown-issuer' && !!field(e, 'presented');
    return { kind: 'untrusted', message: `Certificate not trusted${at}: ${msg}`, actions: askable ? ['Trust Certificate...', 'Show Log'] : ['Show Log'], severity: 'error' };
  }
  if (codes.includes('MissingTool')) return { kind: 'missingTool', message: msg, actions: ['Open Settings', 'Show Log'], severity: 'error' };
  // A registry refusing an oci:// pull: the cloudlet's credentials are fine, the user's registry login is
  // what is missing or wrong.
  if (codes.includes('RegistryRefused')) {
    return { kind: 'registryRefused', message: `The registry refused the pull${at}: ${msg}. Log in to that registry (Publish to it once from the editor, or \`cloudlet registry login HOST\` / \`docker login HOST\`) and synthesize again.`,
      actions: ['Show Log'], severity: 'error' };
  }
  if (codes.includes('Unauthorized') || status === 401) {
    return { kind: 'unauthorized', message: `Wrong credentials${at}: ${msg}`, actions: ['Update Credentials', 'Show Log'], severity: 'error' };
  }
  // Unavailable without an HTTP status: no answer at all (a 503 is an answer: the daemon runs).
  if (codes.some((c) => NET_CODES.has(c)) || (codes.includes('Unavailable') && field(e, 'httpStatus') === undefined)) {
    // A job's fault: the daemon answered; its message names what it could not reach (a registry, a peer).
    if (field(e, 'fromJob')) return { kind: 'other', message: `${msg}${at}`, actions: ['Retry', 'Show Log'], severity: 'error' };
    return { kind: 'unreachable', message: `Cannot reach the cloudlet daemon${at}: ${msg}`, actions: ['Retry', 'Show Log'], severity: 'error' };
  }
  if (codes.includes('MissingBase')) {
    return { kind: 'missingBase', message: `The cloudlet lacks the base VM${at}: ${msg}`, actions: ['Show Log'], severity: 'error' };
  }
  if (codes.includes('Conflict') || status === 409) return { kind: 'conflict', message: msg + at, actions: ['Retry', 'Show Log'], severity: 'warning' };
  if (codes.includes('NotFound') || status === 404) return { kind: 'notFound', message: msg + at, actions: ['Show Log'], severity: 'warning' };
  return { kind: 'other', message: msg + at, actions: ['Show Log'], severity: 'error' };
}
