/** Server-sent events over a Fastify reply: hijack the socket, write `event:`/`data:` frames. */
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface SseStream {
  send(event: string, data: unknown): void;
  close(): void;
  /** Resolves when the client went away or close() was called. */
  closed: Promise<void>;
}

export function openSse(req: FastifyRequest, reply: FastifyReply): SseStream {
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
  // Comments keep proxies and idle timeouts from cutting a quiet stream.
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15000);
  const end = () => {
    if (done) return;
    done = true;
    clearInterval(keepAlive);
    resolveClosed();
  };
  req.raw.on('close', end);
  res.on('close', end);
  return {
    send(event, data) {
      if (!done) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    close() {
      if (!done) res.end();
      end();
    },
    closed,
  };
}
