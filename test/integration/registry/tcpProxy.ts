/**
 * A TCP proxy on loopback that tests can cut: forward to a target, count bytes coming back, and
 * after `cutAfter(n)` bytes destroy every connection (once, or for good with `refuse`).
 */
import * as net from 'net';

export interface TcpProxy {
  host: string;           // 127.0.0.1:PORT
  /** Destroys all connections once `bytes` more bytes went downstream; with refuse, new connections too. */
  cutAfter(bytes: number, opts?: { refuse?: boolean }): void;
  cuts: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let budget = Infinity;
  let refuseAfterCut = false;
  let refusing = false;
  const proxy = {
    cuts: 0,
    cutAfter(bytes: number, opts: { refuse?: boolean } = {}) { budget = bytes; refuseAfterCut = !!opts.refuse; },
  } as TcpProxy;
  const cut = () => {
    proxy.cuts++;
    budget = Infinity;
    if (refuseAfterCut) refusing = true;
    for (const s of sockets) s.destroy();
  };
  const server = net.createServer((client) => {
    if (refusing) { client.destroy(); return; }
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client); sockets.add(upstream);
    const drop = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', drop); upstream.on('error', drop); client.on('close', drop); upstream.on('close', drop);
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => {
      budget -= d.length;
      if (budget <= 0) {
        // Forward only part of this chunk so the cut lands inside a response body.
        client.write(d.subarray(0, Math.max(0, d.length + budget - 1)));
        cut();
        return;
      }
      client.write(d);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  proxy.host = `127.0.0.1:${port}`;
  proxy.close = () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); });
  return proxy;
}
