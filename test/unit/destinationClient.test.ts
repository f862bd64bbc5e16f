/**
 * DestinationClient's failure kinds on real loopback sockets: a request that never reached the
 * destination (nobody listening) is NotDelivered, so a failed finish lets the source resume its VM
 * at once; a connection cut after the request went out is not (finish may have been received).
 */
import { strict as assert } from 'assert';
import * as dc from 'diagnostics_channel';
import * as http from 'http';
import type { Socket } from 'net';
import type { AddressInfo } from 'net';
import { DestinationClient, NotDelivered } from '../../sandbox/handoff/destinationClient';
import { CloudletError } from '../../sandbox/common/errors';

const SID = '0b7c7d3e-2f7a-4a43-9d43-6c1f2f0b9a11';

describe('handoff DestinationClient: delivered or not', function () {
  this.timeout(20_000);

  it('nobody listening: finish fails as NotDelivered (the destination cannot have received it)', async () => {
    const server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r)); // the port is now closed
    const c = new DestinationClient(`http://127.0.0.1:${port}/v2.1`, 'token');
    const e = await c.finish(SID).then(() => undefined, (x: unknown) => x);
    assert.ok(e instanceof NotDelivered, `NotDelivered: ${String(e)}`);
    assert.equal((e as CloudletError).code, 'Unavailable');
  });

  it('the connection cut once the request arrived: an ordinary Unavailable (the outcome must be asked for)', async () => {
    const server = http.createServer((req) => { req.socket.destroy(); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const c = new DestinationClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2.1`, 'token');
      const e = await c.finish(SID).then(() => undefined, (x: unknown) => x);
      assert.ok(e instanceof CloudletError && !(e instanceof NotDelivered), `not NotDelivered: ${String(e)}`);
      assert.equal((e as CloudletError).code, 'Unavailable');
    } finally { await new Promise((r) => server.close(r)); }
  });

  it('an open connection ended with EHOSTUNREACH after the whole final request arrived: not NotDelivered (the code alone does not decide)', async () => {
    let received = 0;
    let gotAll!: () => void;
    const all = new Promise<void>((r) => { gotAll = r; });
    const body = Buffer.alloc(256 * 1024, 7);
    const server = http.createServer((req) => { req.on('data', (c: Buffer) => { received += c.length; }); req.on('end', () => gotAll()); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sockets: Socket[] = [];
    const onConnected = (m: unknown) => { sockets.push((m as { socket: Socket }).socket); };
    dc.subscribe('undici:client:connected', onConnected);
    try {
      const c = new DestinationClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2.1`, 'token');
      const p = c.finalRoundAndFinish(SID, 5, body).then(() => undefined, (x: unknown) => x);
      await all;
      assert.equal(received, body.length);
      // What Linux reports on an established socket whose retransmissions gave up on an unreachable host.
      sockets[sockets.length - 1].destroy(Object.assign(new Error('read EHOSTUNREACH'), { code: 'EHOSTUNREACH', errno: -113, syscall: 'read' }));
      const e = await p;
      assert.ok(e instanceof CloudletError && !(e instanceof NotDelivered), `not NotDelivered: ${String(e)}`);
    } finally {
      dc.unsubscribe('undici:client:connected', onConnected);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
