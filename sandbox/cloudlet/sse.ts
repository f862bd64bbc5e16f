/**
 * Server-sent events over a Fastify reply: hijack the socket, write `event:`/`data:` frames.
 * A stream lives no longer than the token that opened it: it closes at the token's expiry, and the
 * token is asked about again before every event and every keep-alive (a revoked token gets no
 * further event). Either way the last frame is `token-ended` {reason: expired|revoked}.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface SseStream {
  /** Queued in order; written only while the caller's token is still good. */
  send(event: string, data: unknown): void;
  /** Ends the stream after what was sent before. */
  close(): void;
  /** Resolves when the client went away or the stream was closed. */
  closed: Promise<void>;
}

export interface SseCaller {
  /** ISO 8601 expiry of the caller's token. */
  expiresAt: string;
  /** Whether the caller's token is still valid (not revoked, user not disabled). */
  stillValid(): Promise<boolean>;
}

/** Comments keep proxies and idle timeouts from cutting a quiet stream; also when revocation is noticed on a quiet one. */
export const KEEP_ALIVE_MS = 15_000;
/** setTimeout's longest delay; a later expiry is re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function openSse(req: FastifyRequest, reply: FastifyReply, caller: SseCaller): SseStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write(': stream open\n\n');
  let done = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  // Every write goes through this chain, behind the token check it needs.
  let chain = Promise.resolve();
  let expiryTimer: NodeJS.Timeout | undefined;
  const keepAlive = setInterval(() => enqueue(() => res.write(': keep-alive\n\n')), KEEP_ALIVE_MS);
  const end = () => {
    if (done) return;
    done = true;
    clearInterval(keepAlive);
    clearTimeout(expiryTimer);
    resolveClosed();
  };
  const tokenEnded = (reason: 'expired' | 'revoked') => {
    if (done) return;
    res.write(`event: token-ended\ndata: ${JSON.stringify({ reason })}\n\n`);
    res.end();
    end();
  };
  const expiry = Date.parse(caller.expiresAt);
  const armExpiry = () => {
    const left = expiry - Date.now();
    if (left <= 0) { tokenEnded('expired'); return; }
    expiryTimer = setTimeout(armExpiry, Math.min(left, MAX_TIMER_MS));
  };
  const enqueue = (write: () => void) => {
    chain = chain.then(async () => {
      if (done) return;
      if (Date.now() >= expiry) { tokenEnded('expired'); return; }
      let ok = false;
      try { ok = await caller.stillValid(); } catch { /* an identity service that cannot answer vouches for nothing */ }
      if (done) return;
      if (!ok) { tokenEnded(Date.now() >= expiry ? 'expired' : 'revoked'); return; }
      write();
    });
  };
  req.raw.on('close', end);
  res.on('close', end);
  armExpiry();
  return {
    send(event, data) {
      const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
      enqueue(() => res.write(frame));
    },
    close() {
      chain = chain.then(() => {
        if (!done) res.end();
        end();
      });
    },
    closed,
  };
}
