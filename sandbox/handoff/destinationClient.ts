/** The source's view of a destination's handoff routes (protocol.ts), over fetch with the dest token. */
import { CloudletError } from '../common/errors';
import { ApiError, openstackErrorMessage } from '../client/client';
import { CertificateError, fetchFailure, transportFetch, type TlsTrust } from '../client/transport';
import { HANDOFF_FEATURES, HANDOFF_PATH, type BeginRequest, type FinishResponse, type HandoffFeature } from './protocol';
import type { SentWatch } from './requestSent';

const REQUEST_TIMEOUT_MS = 10 * 60_000;

/**
 * Failures of the connect or the name lookup: the request never reached the destination's handler.
 * The system call, not the code, decides (EHOSTUNREACH also ends a connection already open, and a
 * final request usually goes over the connection of the rounds before it).
 */
const NOT_CONNECTED_SYSCALLS = new Set(['connect', 'getaddrinfo']);

/**
 * A request that provably never reached the destination (no connection, or its certificate
 * refused before anything was sent): a finish that failed so was not received, and the VM can
 * resume at the source at once instead of waiting to learn the outcome.
 */
export class NotDelivered extends CloudletError {}

export class DestinationClient {
  private readonly base: string;
  /** `trust`: how to verify the destination's certificate (the daemon's peer trust, or a pin the caller gave). */
  constructor(computeUrl: string, private readonly token: string, private readonly signal?: AbortSignal, private readonly trust?: TlsTrust) {
    this.base = computeUrl.replace(/\/+$/, '') + HANDOFF_PATH;
  }

  get where(): string { return new URL(this.base).host; }

  /**
   * Opens a session; `heartbeatMs`: how often the destination wants to hear from this source between
   * requests; `features`: the protocol features it names (an older destination names none).
   * `watch`: told when the request went out (requestSent.ts).
   */
  async begin(b: BeginRequest, watch?: SentWatch): Promise<{ id: string; heartbeatMs: number; features: HandoffFeature[]; baseStateSha256?: string }> {
    const r = await this.call<{ session: { id: string; heartbeat_ms?: unknown; features?: unknown; base_state_sha256?: unknown } }>('POST', '', JSON.stringify({ handoff: b }), 'application/json', REQUEST_TIMEOUT_MS, true, watch);
    const id = r?.session?.id;
    if (typeof id !== 'string' || !/^[0-9a-f-]{36}$/.test(id)) throw new CloudletError('BadInput', `destination ${this.where} answered begin without a session id`);
    const hb = r.session.heartbeat_ms;
    const named = Array.isArray(r.session.features) ? r.session.features : [];
    const features = HANDOFF_FEATURES.filter((f) => named.includes(f));
    const sha = r.session.base_state_sha256;
    return {
      id, heartbeatMs: typeof hb === 'number' && Number.isInteger(hb) && hb >= 100 && hb <= 60_000 ? hb : 5000, features,
      ...(typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) ? { baseStateSha256: sha } : {}),
    };
  }

  /** "Still here": a destination ends a session whose source is silent for a while (best effort). */
  async heartbeat(sid: string): Promise<void> {
    await this.call('PUT', `/${sid}/heartbeat`, undefined, undefined, 10_000);
  }

  /**
   * Sends one round; the answer says how long the destination took to read+apply it and sync its disk layer.
   * `body` may be its parts in order (sent one after the other, never joined: round 0 is ~30 MB);
   * `watch`: told when its first bytes went out (requestSent.ts).
   */
  async round(sid: string, n: number, body: Buffer | readonly Buffer[], watch?: SentWatch): Promise<{ phases_ms?: Record<string, number> }> {
    const r = await this.call<{ phases_ms?: unknown }>('PUT', `/${sid}/rounds/${n}`, body, 'application/octet-stream', REQUEST_TIMEOUT_MS, true, watch);
    const p = r?.phases_ms;
    return p && typeof p === 'object' ? { phases_ms: Object.fromEntries(Object.entries(p).filter(([, v]) => typeof v === 'number')) as Record<string, number> } : {};
  }

  /**
   * The final round with finish in the same request (header finish: true): the round's phases and
   * finish's answer. Like finish, not cut by the job's signal: once sent, its outcome must be learnt.
   */
  async finalRoundAndFinish(sid: string, n: number, body: Buffer): Promise<{ phases_ms?: Record<string, number>; finish: FinishResponse }> {
    const r = await this.call<{ phases_ms?: unknown; finish?: FinishResponse }>('PUT', `/${sid}/rounds/${n}`, body, 'application/octet-stream', REQUEST_TIMEOUT_MS, false);
    if (!r?.finish || typeof r.finish !== 'object' || typeof r.finish.server?.id !== 'string') {
      throw new CloudletError('Unavailable', `destination ${this.where} answered the final round without finishing (an older destination?)`);
    }
    const p = r.phases_ms;
    return { finish: r.finish, ...(p && typeof p === 'object' ? { phases_ms: Object.fromEntries(Object.entries(p).filter(([, v]) => typeof v === 'number')) as Record<string, number> } : {}) };
  }

  /** Not cut by the job's signal: once sent, finish's outcome must be learnt, not abandoned. */
  finish(sid: string): Promise<FinishResponse> { return this.call<FinishResponse>('POST', `/${sid}/finish`, '{}', 'application/json', REQUEST_TIMEOUT_MS, false); }

  /** Whether the session's VM runs at the destination (see HandoffReceiver.status). */
  async status(sid: string): Promise<{ state: 'running' | 'finishing' | 'not_running'; finish?: FinishResponse }> {
    return (await this.call<{ handoff: { state: 'running' | 'finishing' | 'not_running'; finish?: FinishResponse } }>('GET', `/${sid}`, undefined, undefined, 10_000, false)).handoff;
  }

  async report(sid: string, report: Record<string, unknown>): Promise<void> {
    await this.call('PUT', `/${sid}/report`, JSON.stringify({ report }), 'application/json');
  }

  /** Best effort: a destination that is down has nothing to drop. */
  async abort(sid: string): Promise<void> {
    await this.call('DELETE', `/${sid}`, undefined, undefined, 10_000).catch(() => undefined);
  }

  private async call<T>(method: string, path: string, body: string | Buffer | readonly Buffer[] | undefined, type: string | undefined, timeoutMs = REQUEST_TIMEOUT_MS, cancellable = true, watch?: SentWatch): Promise<T> {
    try { return await this.request<T>(method, path, body, type, timeoutMs, cancellable, watch); } finally { watch?.settled(); }
  }

  private async request<T>(method: string, path: string, body: string | Buffer | readonly Buffer[] | undefined, type: string | undefined, timeoutMs: number, cancellable: boolean, watch?: SentWatch): Promise<T> {
    const signals = [AbortSignal.timeout(timeoutMs), ...(this.signal && cancellable ? [this.signal] : [])];
    // Parts go as an iterable with their total length (undici writes each as it comes, checks the
    // length); a Buffer given to fetch is copied whole first.
    const parts = Array.isArray(body) ? body as readonly Buffer[] : undefined;
    const length = parts?.reduce((n, p) => n + p.length, 0);
    let res: Response;
    try {
      res = await transportFetch(this.base + path, {
        method, signal: AbortSignal.any(signals),
        ...(parts ? { body: iterate(parts) as unknown as RequestInit['body'], duplex: 'half' as const } : { body: body as string | Buffer | undefined }),
        headers: {
          'x-auth-token': this.token, accept: 'application/json', ...(type ? { 'content-type': type } : {}),
          ...(length !== undefined ? { 'content-length': String(length) } : {}), ...watch?.header,
        },
      }, this.trust);
    } catch (e) {
      if (e instanceof CertificateError) throw new NotDelivered('Untrusted', `handoff destination: ${e.message}`, { hint: e.hint });
      const what = `destination ${this.where} did not answer ${method} ${HANDOFF_PATH}${path.replace(/\/[0-9a-f-]{36}/, '/…')}: ${fetchFailure(e, this.base)}`;
      if (NOT_CONNECTED_SYSCALLS.has((e as { cause?: { syscall?: string } }).cause?.syscall ?? '')) throw new NotDelivered('Unavailable', what);
      throw new CloudletError('Unavailable', what);
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      let body: unknown = text;
      try { body = JSON.parse(text); } catch { /* not JSON */ }
      // The destination's code and hint from its error body (cloudlet_error), not guessed from the status.
      throw new ApiError(res.status, `destination ${this.where} refused (${res.status}): ${openstackErrorMessage(body) ?? text}`, method, this.base + path, body);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }
}

/** The parts one after the other (the iterable fetch sends as a body). */
async function* iterate(parts: readonly Buffer[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield p;
}
