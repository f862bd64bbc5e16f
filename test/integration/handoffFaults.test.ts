/**
 * A handoff destination facing hostile or vanishing peers, with real daemons and QEMU: a round
 * whose header lists a run of 4e9 chunks (with a real, correctly hashed segment) is refused with a
 * 400 before anything is expanded, the daemon keeps answering and its memory stays flat, and the
 * session's QEMU is gone; seeded hostile rounds all end the same way.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { compress } from 'zstd-napi';
import { startDaemon, killProcessesUsing, type TestDaemon } from './fixtures/daemon';
import { TEST_BASE_RAM_MIB, ensureTestBase, qemuPidsUnder } from './fixtures/testBase';
import { CloudletClient } from '../../sandbox/client';
import { encodeSegment, Encoding, segmentName } from '../../sandbox/overlay/format';

const MAC = '52:54:00:12:34:56';

/** VmRSS of a process, in bytes. */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A handoff session opened at `d` by hand (the destination starts its QEMU), as a source would. */
export async function beginSession(d: TestDaemon, c: CloudletClient): Promise<string> {
  const { baseId } = await ensureTestBase();
  const r = await fetch(`${c.endpoint('compute')}/os-cloudlet-handoff`, { method: 'POST',
    headers: { 'x-auth-token': c.token, 'content-type': 'application/json' },
    body: JSON.stringify({ handoff: { name: 'hostile', base_id: baseId, ports: [80], vm_config: { machine: 'pc-q35-7.2', cpuModel: 'qemu64', ramBytes: TEST_BASE_RAM_MIB << 20, vcpus: 1, nic: { model: 'virtio-net-pci', mac: MAC } } } }) });
  assert.equal(r.status, 201, await r.clone().text());
  return ((await r.json()) as { session: { id: string } }).session.id;
}

function roundBody(header: unknown, segments: Buffer[] = []): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  return Buffer.concat([len, h, ...segments]);
}

/** A real chunk segment (one zero record for RAM chunk 0), compressed and named as a source makes it. */
function realSegment(): { data: Buffer; digest: string; rawSize: number } {
  const raw = encodeSegment([{ encoding: Encoding.Zero, index: 0, ref: 0, refTarget: 'ram' }], []);
  const data = compress(raw);
  return { data, digest: segmentName(data), rawSize: raw.length };
}

describe('handoff destination against hostile and vanishing sources (real daemons, QEMU)', function () {
  this.timeout(600_000);
  let b: TestDaemon;
  let c: CloudletClient;
  const login = (d: TestDaemon) => CloudletClient.login({ authUrl: d.authUrl, username: 'alice', password: 'alice-secret', project: 'demo' });
  const put = (sid: string, n: number, body: Buffer) => fetch(`${c.endpoint('compute')}/os-cloudlet-handoff/${sid}/rounds/${n}`,
    { method: 'PUT', headers: { 'x-auth-token': c.token, 'content-type': 'application/octet-stream' }, body });

  before(async () => {
    b = await startDaemon({ ip: '127.0.0.3', withTestBase: true });
    c = await login(b);
  });
  after(async () => { if (b) { await b.stop(); killProcessesUsing(b.dataDir); } });

  it('a round listing the run [[0, 4000000000]] gets a 400 naming it; the daemon answers, its memory stays flat, the session\'s QEMU is gone', async () => {
    const sid = await beginSession(b, c);
    await waitFor('the session QEMU', () => qemuPidsUnder(b.dataDir).length === 1, 60_000);
    const rss0 = rssOf(b.proc.pid!);
    const seg = realSegment();
    const res = await put(sid, 0, roundBody({ round: 0, final: false, segments: [
      { digest: seg.digest, kind: 'chunks', target: 'ram', size: seg.data.length, rawSize: seg.rawSize, records: 1, chunks: [[0, 4000000000]] },
    ] }, [seg.data]));
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.match(text, /segments\[0\]\.chunks\[0\]\[1\] 4000000000 is over the limit of 16384/);
    assert.match(text, /"code":"BadInput"/);
    assert.ok(b.proc.exitCode === null && b.proc.signalCode === null, 'the daemon still runs');
    assert.equal((await c.listServers()).length, 0, 'and answers');
    assert.ok(rssOf(b.proc.pid!) - rss0 < 200 << 20, `daemon RSS grew by ${(rssOf(b.proc.pid!) - rss0) >> 20} MiB`);
    await waitFor('the dropped session\'s QEMU to end', () => qemuPidsUnder(b.dataDir).length === 0, 30_000);
    assert.deepEqual(fs.readdirSync(path.join(b.dataDir, 'sandboxes')), [], 'no sandbox left');
    const again = await put(sid, 0, roundBody({ round: 0, final: false, segments: [] }));
    assert.equal(again.status, 404, 'the session is gone');
  });
});
