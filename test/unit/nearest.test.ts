/** The nearest-cloudlet choice from measured round trips: medians, ties, failures, unreachable and base-less cloudlets. */
import { strict as assert } from 'assert';
import * as https from 'https';
import type { AddressInfo } from 'net';
import { findNearest, median, nearestTable, rankByRtt, type Candidate, type NearestRow } from '../../sandbox/client/nearest';
import { makeCertificate } from '../../sandbox/cloudlet/certificate';
import type { TlsTrust } from '../../sandbox/client/transport';

const row = (name: string, samplesMs: number[], o: Partial<NearestRow> = {}): NearestRow => ({ name, samplesMs, failures: 0, holdsBase: true, state: 'unreachable', url: `http://${name}/`, ...o });

describe('nearest cloudlet by round-trip time', () => {
  it('median of odd and even counts, none for no samples', () => {
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), undefined);
  });

  it('picks the lowest median, not the lowest single probe', () => {
    const r = rankByRtt([row('a', [1, 30, 31, 32, 33]), row('b', [9, 10, 11, 10, 10])]);
    assert.equal(r.nearest, 'b');
    assert.deepEqual(r.rows.map((x) => [x.name, x.state, x.medianMs]), [['b', 'nearest', 10], ['a', 'farther', 31]]);
  });

  it('medians within the tolerance tie: fewer failed probes first, then the name; both are shown as a tie', () => {
    const r = rankByRtt([row('zeta', [2.0, 2.0, 2.0]), row('alpha', [2.1, 2.1, 2.1]), row('far', [20, 20, 20])]);
    assert.equal(r.nearest, 'alpha');
    assert.deepEqual(r.rows.map((x) => x.state), ['nearest', 'tie', 'farther']);
    assert.match(r.rows[0].note!, /tie with zeta .*picked by name/);
    assert.match(r.rows[1].note!, /tie with alpha/);
    const f = rankByRtt([row('alpha', [2.0, 2.0], { failures: 1 }), row('zeta', [2.05, 2.05, 2.05])]);
    assert.equal(f.nearest, 'zeta');
    assert.match(f.rows[0].note!, /fewer failed probes/);
  });

  it('the tolerance grows with the distance (10% of the lowest median) and has a floor', () => {
    assert.equal(rankByRtt([row('a', [100]), row('b', [109])]).rows[1].state, 'tie');
    assert.equal(rankByRtt([row('a', [100]), row('b', [111])]).rows[1].state, 'farther');
    assert.equal(rankByRtt([row('a', [0.2]), row('b', [0.6])]).rows[1].state, 'tie');
    assert.equal(rankByRtt([row('a', [0.2]), row('b', [0.6])], { toleranceMs: 0.1, toleranceRatio: 0 }).rows[1].state, 'farther');
  });

  it('never picks a cloudlet without the base or one that did not answer, and says why', () => {
    const r = rankByRtt([
      row('down', [], { holdsBase: undefined, note: 'fetch failed (ECONNREFUSED)' }),
      row('silent', [], { failures: 5 }),
      row('nobase', [], { holdsBase: false }),
      row('slow', [40, 41, 39]),
    ]);
    assert.equal(r.nearest, 'slow');
    assert.deepEqual(r.rows.map((x) => [x.name, x.state]), [['slow', 'nearest'], ['nobase', 'no-base'], ['down', 'unreachable'], ['silent', 'unreachable']]);
    assert.match(r.rows[3].note!, /no probe answered \(5 tried\)/);
    const table = nearestTable(r);
    assert.match(table, /^CLOUDLET\s+BASE\s+MEDIAN RTT\s+PROBES\s+STATE$/m);
    assert.match(table, /^slow\s+yes\s+40\.00 ms\s+3\/3 answered \(39\.00-41\.00\)\s+nearest$/m);
    assert.match(table, /^down\s+\?\s+-\s+-\s+unreachable: fetch failed \(ECONNREFUSED\)$/m);
  });

  it('nothing to pick: no nearest, every row shown', () => {
    const r = rankByRtt([row('nobase', [], { holdsBase: false }), row('down', [], { holdsBase: undefined })]);
    assert.equal(r.nearest, undefined);
    assert.equal(r.rows.length, 2);
  });

  it('probes a self-signed HTTPS region through its client\'s trust: measured when pinned, unreachable without the pin', async function () {
    this.timeout(20_000);
    const cert = await makeCertificate({ commonName: 'edge', ipAddresses: ['127.0.0.1'] });
    const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"versions":[]}'); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const region = (name: string, trust: TlsTrust | undefined): Candidate => ({
      name,
      // Only what findNearest uses of a CloudletClient: the endpoint, the base list, the trust.
      client: { endpoint: () => `https://127.0.0.1:${port}/compute/v2.1`, listBases: async () => [{ base_sha256_uuid: 'b1' }], trust } as unknown as Candidate['client'],
    });
    try {
      const pin = { pins: { [`127.0.0.1:${port}`]: cert.fingerprint.replace(/:/g, '').toLowerCase() } };
      const r = await findNearest([region('pinned', pin), region('unpinned', undefined)], 'b1', { probes: 3, timeoutMs: 3000 });
      assert.equal(r.nearest, 'pinned');
      const byName = Object.fromEntries(r.rows.map((x) => [x.name, x]));
      assert.equal(byName.pinned.samplesMs.length, 3);
      assert.equal(byName.unpinned.state, 'unreachable');
      assert.equal(byName.unpinned.samplesMs.length, 0);
    } finally { server.closeAllConnections(); await new Promise((r) => server.close(r)); }
  });
});
