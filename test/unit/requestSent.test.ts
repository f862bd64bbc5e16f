/**
 * When a handoff request is on its way (requestSent.ts), with real undici on loopback sockets: the
 * source orders its heavy synchronous work after it. A round's body given as parts arrives whole,
 * with its length declared.
 */
import { strict as assert } from 'assert';
import * as http from 'http';
import type { AddressInfo } from 'net';
import { DestinationClient } from '../../sandbox/handoff/destinationClient';
import { REQUEST_ID_HEADER, watchRequestSent } from '../../sandbox/handoff/requestSent';
import { encodeRoundBody, encodeRoundParts } from '../../sandbox/handoff/protocol';

const SID = '0b7c7d3e-2f7a-4a43-9d43-6c1f2f0b9a11';
const listen = async (server: http.Server) => { await new Promise<void>((r) => server.listen(0, '127.0.0.1', r)); return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2.1`; };
const close = (server: http.Server) => new Promise((r) => { server.closeAllConnections(); server.close(r); });
/** Whether `p` settled by the next turn of the event loop. */
const settled = async (p: Promise<unknown>) => { let done = false; void p.then(() => { done = true; }, () => { done = true; }); await new Promise((r) => setImmediate(r)); return done; };

describe('handoff requests: on their way (requestSent)', function () {
  this.timeout(20_000);

  it('sent resolves once the first body bytes are written, while the answer is still held; the parts arrive whole with their length', async () => {
    const parts = encodeRoundParts({ round: 0, final: false, segments: [] }, [Buffer.alloc(3 << 20, 1), Buffer.alloc(5, 2), Buffer.alloc(1 << 20, 3)]);
    let first!: () => void;
    const firstBytes = new Promise<void>((r) => { first = r; });
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const got: { length?: string; id?: string; body?: Buffer } = {};
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      got.length = req.headers['content-length'];
      got.id = req.headers[REQUEST_ID_HEADER] as string | undefined;
      req.on('data', (c: Buffer) => { chunks.push(c); first(); });
      req.on('end', () => { got.body = Buffer.concat(chunks); void held.then(() => res.end('{}')); });
    });
    const url = await listen(server);
    try {
      const watch = watchRequestSent(60_000);
      assert.equal(await settled(watch.sent), false, 'nothing sent before the request is made');
      const answer = new DestinationClient(url, 'token').round(SID, 0, parts, watch);
      await watch.sent;
      await firstBytes;
      assert.equal(await settled(answer), false, 'the answer is still held by the server');
      release();
      await answer;
      const whole = encodeRoundBody({ round: 0, final: false, segments: [] }, parts.slice(1));
      assert.equal(got.length, String(whole.length));
      assert.ok(got.body!.equals(whole), 'the bytes are the parts in order');
      assert.match(got.id ?? '', /^[0-9a-f-]{36}$/);
    } finally { await close(server); }
  });

  it('a request that fails (nobody listening) resolves sent, and another request does not resolve a watch it does not carry', async () => {
    const server = http.createServer((_req, res) => res.end('{}'));
    const url = await listen(server);
    const gone = http.createServer();
    const goneUrl = await listen(gone);
    await close(gone);
    try {
      const other = watchRequestSent(60_000);
      await new DestinationClient(url, 'token').heartbeat(SID); // sent and answered without `other`'s id
      assert.equal(await settled(other.sent), false, 'a watch is resolved only by its own request');
      const refused = watchRequestSent(60_000);
      await new DestinationClient(goneUrl, 'token').round(SID, 0, [Buffer.alloc(10)], refused).catch(() => undefined);
      assert.equal(await settled(refused.sent), true, 'a failed request resolves its watch');
      other.settled();
    } finally { await close(server); }
  });

  it('sent resolves after its longest wait even if undici never says (order only, never a hang)', async () => {
    const w = watchRequestSent(30);
    assert.equal(await settled(w.sent), false);
    await w.sent;
  });
});
