/**
 * When undici handed a request's first bytes to its socket. fetch resolves only with the answer, but
 * the handoff's source wants to know when a request is on its way: its heavy synchronous preparation
 * runs after that, not before (fetch needs turns of the event loop to connect and write, so any
 * synchronous block right after the call delays the request's first byte by its whole length).
 * undici publishes its progress on diagnostics_channel; a request is recognised by a random id in
 * one header (REQUEST_ID_HEADER; a receiver ignores it).
 */
import { randomUUID } from 'crypto';
import * as diagnostics from 'diagnostics_channel';

export const REQUEST_ID_HEADER = 'x-cloudlet-request-id';

/**
 * Longest wait for the event: past it `sent` resolves anyway (an undici that stopped publishing, a
 * connect that hangs): the caller only orders its work by it, nothing depends on it for correctness.
 */
export const SENT_WAIT_MAX_MS = 3000;

interface Waiter { resolve(): void }

/** Waiters by request id, until their request's headers go out; then by undici's request object. */
const byId = new Map<string, Waiter>();
const byRequest = new WeakMap<object, Waiter>();
let subscribed = false;

const ID_IN_HEADERS = new RegExp(`\\r\\n${REQUEST_ID_HEADER}: ([0-9a-f-]{36})\\r\\n`, 'i');

function subscribe(): void {
  if (subscribed) return;
  subscribed = true;
  diagnostics.subscribe('undici:client:sendHeaders', (m) => {
    const { request, headers } = m as { request?: object; headers?: unknown };
    if (!request || typeof headers !== 'string') return;
    const id = ID_IN_HEADERS.exec(headers)?.[1];
    const w = id === undefined ? undefined : byId.get(id);
    if (!w || id === undefined) return;
    byId.delete(id);
    byRequest.set(request, w);
  });
  // A body's first chunk written (or, for a bodiless request, the request written): on its way.
  const onWritten = (m: unknown) => {
    const request = (m as { request?: object }).request;
    const w = request && byRequest.get(request);
    if (!w || !request) return;
    byRequest.delete(request);
    w.resolve();
  };
  diagnostics.subscribe('undici:request:bodyChunkSent', onWritten);
  diagnostics.subscribe('undici:request:bodySent', onWritten);
  diagnostics.subscribe('undici:request:error', onWritten);
}

export interface SentWatch {
  /** The header to send with the request. */
  header: Record<string, string>;
  /** Resolves when the request's first bytes were written to its socket (or it failed, settled, or SENT_WAIT_MAX_MS passed). */
  sent: Promise<void>;
  /** The request settled (answered or failed): resolves `sent` if it has not, and forgets the request. */
  settled(): void;
}

export function watchRequestSent(maxMs = SENT_WAIT_MAX_MS): SentWatch {
  subscribe();
  const id = randomUUID();
  let resolve!: () => void;
  const sent = new Promise<void>((r) => { resolve = r; });
  const timer = setTimeout(() => done(), maxMs);
  timer.unref?.();
  const done = () => { clearTimeout(timer); byId.delete(id); resolve(); };
  byId.set(id, { resolve: done });
  return { header: { [REQUEST_ID_HEADER]: id }, sent, settled: done };
}
