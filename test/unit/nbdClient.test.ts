/**
 * The handoff's NBD client (sandbox/qemu/nbdClient.ts) against a server that misbehaves after a
 * correct handshake: it stalls on block status (asked while the VM is paused) or announces an
 * oversized reply. The client gives up with an NBD error instead of waiting or buffering.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { NbdBitmapClient } from '../../sandbox/qemu/nbdClient';

const NBDMAGIC = 0x4e42444d41474943n, IHAVEOPT = 0x49484156454f5054n, OPT_REPLY_MAGIC = 0x3e889045565a9n;

/** A fixed-newstyle server that negotiates one export and meta context, then does `onRequest`. */
function fakeServer(sock: string, onRequest: (s: net.Socket, cookie: bigint) => void): net.Server {
  return net.createServer((s) => {
    let buf = Buffer.alloc(0), phase: 'flags' | 'options' | 'transmission' = 'flags';
    const reply = (opt: number, type: number, data: Buffer) => {
      const h = Buffer.alloc(20);
      h.writeBigUInt64BE(OPT_REPLY_MAGIC, 0); h.writeUInt32BE(opt, 8); h.writeUInt32BE(type, 12); h.writeUInt32BE(data.length, 16);
      s.write(Buffer.concat([h, data]));
    };
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBDMAGIC, 0); hello.writeBigUInt64BE(IHAVEOPT, 8); hello.writeUInt16BE(3, 16);
    s.write(hello);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') { if (buf.length < 4) return; buf = buf.subarray(4); phase = 'options'; continue; }
        if (phase === 'options') {
          if (buf.length < 16) return;
          const opt = buf.readUInt32BE(8), len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          buf = buf.subarray(16 + len);
          if (opt === 10) { const ctx = Buffer.from('qemu:dirty-bitmap:b'); const id = Buffer.alloc(4); id.writeUInt32BE(1); reply(opt, 4, Buffer.concat([id, ctx])); }
          if (opt === 7) { const info = Buffer.alloc(12); info.writeUInt16BE(0, 0); info.writeBigUInt64BE(BigInt(1 << 20), 2); reply(opt, 3, info); phase = 'transmission'; }
          reply(opt, 1, Buffer.alloc(0));
          continue;
        }
        if (buf.length < 28) return;
        const cookie = buf.readBigUInt64BE(8);
        buf = buf.subarray(28);
        onRequest(s, cookie);
      }
    });
  }).listen(sock);
}

describe('NBD bitmap client against a misbehaving server', function () {
  this.timeout(20_000);
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbd-unit-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a block status that never comes fails at the deadline, not never', async () => {
    const sock = path.join(dir, 'stall.sock');
    const srv = fakeServer(sock, () => { /* never answers */ });
    try {
      const c = await NbdBitmapClient.connect(sock, 'disk', 'b');
      const t0 = Date.now();
      await assert.rejects(c.dirtyExtents(300), /NBD: .*no block status within 300 ms/);
      assert.ok(Date.now() - t0 < 5_000);
      c.close();
    } finally { srv.close(); }
  });

  it('a reply announcing 4 GiB of payload is refused before it is buffered', async () => {
    const sock = path.join(dir, 'huge.sock');
    const srv = fakeServer(sock, (s, cookie) => {
      const h = Buffer.alloc(20);
      h.writeUInt32BE(0x668e33ef, 0); h.writeUInt16BE(1, 4); h.writeUInt16BE(5, 6); h.writeBigUInt64BE(cookie, 8); h.writeUInt32BE(0xffffffff, 16);
      s.write(h);
    });
    try {
      const c = await NbdBitmapClient.connect(sock, 'disk', 'b');
      await assert.rejects(c.dirtyExtents(), /NBD: reply of 4294967295 bytes to block status/);
      c.close();
    } finally { srv.close(); }
  });
});
