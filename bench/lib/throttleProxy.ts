/**
 * A TCP proxy on loopback that limits each direction to `bitsPerSecond` (token bucket, 10 ms
 * ticks): an edge-like link for the handoff benchmark, shared by both peers measured.
 */
import * as net from 'net';

export interface ThrottleProxy { port: number; close(): Promise<void> }

function throttled(from: net.Socket, to: net.Socket, bytesPerSec: number): void {
  let budget = 0;
  const queue: Buffer[] = [];
  const tick = setInterval(() => {
    budget = Math.min(budget + bytesPerSec / 100, bytesPerSec / 10);
    while (queue.length && budget > 0) {
      const b = queue[0];
      const n = Math.min(b.length, Math.floor(budget));
      if (n <= 0) break;
      to.write(b.subarray(0, n));
      budget -= n;
      if (n === b.length) queue.shift(); else queue[0] = b.subarray(n);
    }
    if (queue.length > 64) from.pause(); else from.resume();
    if (!queue.length && ended) { clearInterval(tick); to.end(); }
  }, 10);
  let ended = false;
  from.on('data', (d: Buffer) => queue.push(d));
  from.on('end', () => { ended = true; });
  from.on('error', () => { clearInterval(tick); to.destroy(); });
  from.on('close', () => { if (!ended) { clearInterval(tick); to.destroy(); } });
}

export function startThrottleProxy(target: { host: string; port: number }, bitsPerSecond: number, listenHost = '127.0.0.1'): Promise<ThrottleProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(target.port, target.host);
    for (const s of [client, up]) { sockets.add(s); s.on('close', () => sockets.delete(s)); }
    throttled(client, up, bitsPerSecond / 8);
    throttled(up, client, bitsPerSecond / 8);
  });
  return new Promise((resolve) => server.listen(0, listenHost, () => resolve({
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  })));
}
