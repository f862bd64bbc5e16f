/**
 * API fuzz (issue 11): every route with a declared body or query gets seeded hostile input made
 * from its own schema (test/fuzz/schemaFuzz.ts), as a member and as an admin, against a daemon with
 * every built-in module. Each answer must be a clean client error or success in the service's
 * body (never a 5xx, never a body without cloudlet_error), the daemon must answer afterwards and no
 * process (QEMU) may have been started over its data folder.
 * Replay a failure with FUZZ_SEED=<the printed seed>.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import type { InjectOptions } from 'fastify';
import type { RouteShape } from '../../../sandbox/cloudlet/validation';
import { Random, fuzzSeed } from '../../fuzz/random';
import { generate, mutate, RAW_BODIES, NASTY } from '../../fuzz/schemaFuzz';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';

const CASES = Number(process.env.FUZZ_CASES ?? 400);
/** Streams (server-sent events, the console) would hold the request open; uploads are raw. */
const SKIP = /\/events$|\/console$|\/file$|\/rounds\//;
const NO_BODY_METHODS = new Set(['GET', 'HEAD']);

describe('API fuzz: schema-made hostile bodies and queries', function () {
  this.timeout(120_000);
  const seed = fuzzSeed();
  let d: UnitDaemon;
  let engine: http.Server;
  const ids: string[] = [];

  before(async () => {
    console.log(`      API fuzz seed ${seed} (replay: FUZZ_SEED=${seed})`);
    d = await startUnitDaemon(undefined);
    // A few real resources, so some paths lead somewhere.
    const img = await d.inject('alice', { method: 'POST', url: '/image/v2/images', payload: { name: 'fuzz', disk_format: 'raw', container_format: 'bare' } });
    ids.push(img.json().id);
    // A device whose engine answers Docker's ping, and a lease on it.
    engine = http.createServer((_req, res) => res.end('OK'));
    const sock = path.join(d.dataDir, 'engine.sock');
    await new Promise<void>((ok) => engine.listen(sock, ok));
    const dev = await d.inject('admin', { method: 'POST', url: '/inventory/v1/hardware', payload: { name: 'fuzz-pi', machine_name: 'raspberrypi4-64', engine_endpoint: `unix://${sock}` } });
    ids.push(dev.json().uuid);
    const at = (h: number) => new Date(Date.now() + h * 3600_000).toISOString().slice(0, 16).replace('T', ' ');
    const lease = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', payload: { name: 'fuzz', start_date: at(24), end_date: at(25), reservations: [{ resource_type: 'device', min: 1, max: 1 }] } });
    assert.equal(lease.statusCode, 201, lease.body);
    ids.push(lease.json().lease.id);
  });
  after(async () => { await d?.close(); engine?.close(); });

  it(`${CASES} cases: each a clean answer, never a 5xx; the daemon answers on`, async () => {
    const r = new Random(seed);
    const routes = d.daemon.routes.filter((x) => x.method !== 'HEAD' && !SKIP.test(x.url) && x.schema && (x.schema.body || x.schema.querystring));
    assert.ok(routes.length > 30, `only ${routes.length} routes to fuzz`);
    const statuses = new Map<number, number>();
    for (let i = 0; i < CASES; i++) {
      const route = r.pick(routes);
      const req = fuzzRequest(route, r, ids);
      const user = route.url.startsWith('/inventory') || route.url.includes('/builds') ? r.pick(['admin', 'alice'] as const) : r.pick(['alice', 'alice', 'admin', undefined] as const);
      const res = await d.inject(user, req.options);
      const where = `case ${i} (seed ${seed}): ${req.options.method} ${req.options.url} as ${user ?? 'nobody'}, ${req.what}`;
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      assert.ok(res.statusCode < 500, `${where}: ${res.statusCode} ${res.body.slice(0, 300)}`);
      if (res.statusCode >= 400) {
        let body: any;
        try { body = res.json(); } catch { assert.fail(`${where}: ${res.statusCode} with a body that is not JSON: ${res.body.slice(0, 200)}`); }
        assert.ok(body.cloudlet_error?.code, `${where}: ${res.statusCode} without cloudlet_error: ${res.body.slice(0, 300)}`);
      }
    }
    console.log(`      statuses: ${[...statuses].sort().map(([s, n]) => `${s}x${n}`).join(' ')}`);
    assert.ok((statuses.get(400) ?? 0) > CASES / 4, 'most cases are refused by a schema');
    // Still serving, state still consistent: a new image shows up in the list.
    const made = await d.inject('alice', { method: 'POST', url: '/image/v2/images', payload: { name: 'after-fuzz' } });
    assert.equal(made.statusCode, 201, made.body);
    const alive = await d.inject('alice', { method: 'GET', url: '/image/v2/images?limit=1000' });
    assert.equal(alive.statusCode, 200);
    assert.ok(alive.json().images.some((x: { id: string }) => x.id === made.json().id));
    assert.ok(!d.logs.some((l) => /internal error|TypeError|RangeError/.test(l)), d.logs.filter((l) => /Error/.test(l)).slice(0, 3).join('\n'));
    assert.deepEqual(processesUsing(d.dataDir), [], 'no process (QEMU) was started over the data folder');
  });
});

/** One request for a route: schema-made parts, one of them (body, query or path) made hostile. */
function fuzzRequest(route: RouteShape, r: Random, ids: string[]): { options: InjectOptions; what: string } {
  const method = (Array.isArray(route.method) ? route.method[0] : route.method) as InjectOptions['method'];
  const s = route.schema as Record<string, any>;
  const url = route.url.replace(/:([A-Za-z0-9_]+)/g, () => enc(r.chance(0.5) && ids.length ? r.pick(ids) : String(r.pick(['x', '1', '0'.repeat(64), '..', '%2e%2e', ...NASTY.filter((v) => typeof v === 'string').slice(0, 8)]))));
  const queryValues: Record<string, unknown> = s.querystring ? generate(s.querystring, r) as Record<string, unknown> : {};
  const part = NO_BODY_METHODS.has(String(method)) || !s.body || s.body.description?.startsWith('a byte stream') ? 'query' : r.pick(['body', 'body', 'body', 'query', 'raw']);
  let what = 'schema-made';
  if (part === 'query' && r.chance(0.8)) {
    const m = mutate(queryValues, r);
    what = `query ${m.what}`;
    Object.assign(queryValues, m.value && typeof m.value === 'object' && !Array.isArray(m.value) ? m.value : { q: m.value });
  }
  const qs = Object.entries(queryValues).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]]))
    .map(([k, v]) => `${enc(String(k))}=${enc(typeof v === 'string' ? v : JSON.stringify(v) ?? '')}`).join('&');
  const options: InjectOptions = { method, url: qs ? `${url}?${qs}` : url };
  if (part === 'raw') {
    options.headers = { 'content-type': r.pick(['application/json', 'application/json-patch+json', 'text/plain', 'application/x-www-form-urlencoded']) };
    options.payload = r.pick(RAW_BODIES);
    what = `raw body ${JSON.stringify(options.payload).slice(0, 40)}`;
  } else if (part === 'body') {
    const valid = generate(s.body, r);
    const m = r.chance(0.85) ? mutate(valid, r) : { value: valid, what: 'schema-made body' };
    what = `body ${m.what}`;
    options.headers = { 'content-type': route.url.includes('/images/') && method === 'PATCH' ? 'application/openstack-images-v2.1-json-patch' : 'application/json' };
    options.payload = JSON.stringify(m.value) ?? 'null';
  }
  return { options, what };
}

/** Percent-encoding that also takes lone surrogates (as the bytes of invalid UTF-8: what a hostile client sends). */
function enc(v: string): string {
  try { return encodeURIComponent(v); } catch { return '%ED%A0%80'; }
}

/** Pids of processes whose command line names `dir` (a QEMU of this daemon would). */
function processesUsing(dir: string): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir); } catch { return false; }
  }).map(Number);
}
