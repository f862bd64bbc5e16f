/**
 * The request-validation rule (sandbox/cloudlet/validation.ts): every route of a daemon with all
 * its modules declares query, params and body schemas; a route without them cannot be registered;
 * a refusal is a 400 in the service's OpenStack shape whose hint names the field.
 */
import { strict as assert } from 'assert';
import type { ApiModule } from '../../../sandbox/cloudlet/context';
import { routeSchemaProblem, MAX_JSON_DEPTH } from '../../../sandbox/cloudlet/validation';
import { jsonDepth } from '../../../sandbox/common/jsonDepth';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';

describe('route schemas', function () {
  this.timeout(60_000);
  let d: UnitDaemon;
  before(async () => { d = await startUnitDaemon(undefined); });
  after(async () => { await d?.close(); });

  it('every route of every built-in module declares its query, params and body schemas', () => {
    const routes = d.daemon.routes;
    assert.ok(routes.length > 50, `only ${routes.length} routes listed`);
    const problems = routes.map((r) => [`${String(r.method)} ${r.url}`, routeSchemaProblem(r)]).filter(([, p]) => p);
    assert.deepEqual(problems, []);
    for (const prefix of ['/identity', '/compute/v2.1/servers', '/compute/v2.1/os-cloudlet-handoff', '/image', '/reservation/v1', '/container/v1', '/inventory/v1', '/cloudlet/v1', '/sandbox/v1']) {
      assert.ok(routes.some((r) => r.url.startsWith(prefix)), `no route listed under ${prefix}`);
    }
  });

  it('a module registering a route without a schema stops the daemon from starting', async () => {
    const careless: ApiModule = { serviceType: 'image', prefix: '/image', migrate: () => {}, routes(app) { app.post('/v2/things', async () => ({})); } };
    await assert.rejects(startUnitDaemon([careless]), /route POST \/image\/v2\/things declares no schema/);
    const noBody: ApiModule = { ...careless, routes(app) { app.put('/v2/things/:id', { schema: { querystring: {}, params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'], additionalProperties: false } } }, async () => ({})); } };
    await assert.rejects(startUnitDaemon([noBody]), /declares no body schema/);
  });

  it('the rule: querystring always, params exactly for path parameters (closed), body for methods with one', () => {
    const closed = { type: 'object', properties: { id: {} }, required: ['id'], additionalProperties: false };
    assert.equal(routeSchemaProblem({ method: 'GET', url: '/x/:id', schema: { querystring: {}, params: closed } }), undefined);
    assert.match(routeSchemaProblem({ method: 'GET', url: '/x/:id', schema: { params: closed } })!, /querystring/);
    assert.match(routeSchemaProblem({ method: 'GET', url: '/x/:id', schema: { querystring: {} } })!, /params schema for :id/);
    assert.match(routeSchemaProblem({ method: 'GET', url: '/x/:id', schema: { querystring: {}, params: { ...closed, additionalProperties: true } } })!, /additional/);
    assert.match(routeSchemaProblem({ method: 'GET', url: '/x', schema: { querystring: {}, params: closed } })!, /without parameters/);
    assert.match(routeSchemaProblem({ method: 'DELETE', url: '/x', schema: { querystring: {} } })!, /no body schema/);
    assert.match(routeSchemaProblem({ method: 'GET', url: '/x', schema: { querystring: {}, body: {} } })!, /method without a body/);
  });

  it('a schema refusal is a 400 in the service\'s own body, cloudlet_error naming the field', async () => {
    const glance = await d.inject('alice', { method: 'POST', url: '/image/v2/images', payload: { name: 'x', min_ram: '512' } });
    assert.equal(glance.statusCode, 400);
    assert.equal(glance.json().code, '400 Bad Request');
    assert.match(glance.json().message, /min_ram/);
    assert.deepEqual(glance.json().cloudlet_error, { code: 'BadInput', hint: 'request body: min_ram must be an integer, not "512"' });
    const blazar = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', payload: { name: 'l', end_date: 'x', reservations: [{ resource_type: 'device', max: { a: 1 } }] } });
    assert.equal(blazar.statusCode, 400);
    assert.equal(blazar.json().error_code, 400);
    assert.match(blazar.json().cloudlet_error.hint, /^request body: reservations\[0\]\.max must be an integer/);
    const query = await d.inject('alice', { method: 'GET', url: '/reservation/v1/leases/abc?verbose=1' });
    assert.equal(query.statusCode, 400);
    assert.equal(query.json().cloudlet_error.hint, 'query: verbose is not a known field');
    const missing = await d.inject(undefined, { method: 'POST', url: '/identity/v3/auth/tokens', payload: { auth: { identity: { methods: ['password'], password: { user: { name: 'alice' } } } } } });
    assert.equal(missing.statusCode, 400);
    assert.equal(missing.json().error.code, 400);
    assert.equal(missing.json().cloudlet_error.hint, 'request body: auth.identity.password.user.password is missing');
    assert.match(missing.json().error.message, /^Invalid input for field\/attribute auth\.identity\.password\.user\.password\. /);
  });

  it('an empty body sent as JSON is no body: a route taking none accepts it, one needing a body refuses it', async () => {
    const none = await d.inject('alice', { method: 'DELETE', url: '/cloudlet/v1/jobs/nope', headers: { 'content-type': 'application/json' }, payload: '' });
    assert.equal(none.statusCode, 404, none.body);
    const some = await d.inject('alice', { method: 'DELETE', url: '/cloudlet/v1/jobs/nope', payload: { a: 1 } });
    assert.equal(some.statusCode, 400);
    assert.equal(some.json().cloudlet_error.hint, 'request body: this call takes no body');
    const pause = await d.inject('alice', { method: 'POST', url: '/compute/v2.1/servers/x/action', payload: { pause: { now: true } } });
    assert.equal(pause.json().cloudlet_error.hint, 'request body: pause takes no argument (null or {})');
    const needed = await d.inject('alice', { method: 'POST', url: '/image/v2/images', headers: { 'content-type': 'application/json' }, payload: ' ' });
    assert.equal(needed.statusCode, 400);
    assert.equal(needed.json().cloudlet_error.code, 'BadInput');
  });

  it('zunclient\'s requests pass the schemas (all_projects on show and delete, empty action bodies); a Zun error\'s title is its message', async () => {
    const json = { 'content-type': 'application/json', 'openstack-api-version': 'container 1.40' };
    const show = await d.inject('alice', { method: 'GET', url: '/container/v1/containers/nope?all_projects=False', headers: json });
    assert.equal(show.statusCode, 404, show.body);
    // zunclient prints only the title: "ERROR: container nope not found (HTTP 404)".
    assert.equal(show.json().errors[0].title, 'container nope not found');
    assert.equal(show.json().errors[0].detail, 'container nope not found');
    const del = await d.inject('alice', { method: 'DELETE', url: '/container/v1/containers/nope?force=False&stop=True&all_projects=False', headers: json });
    assert.equal(del.statusCode, 404, del.body);
    for (const action of ['start', 'stop?timeout=10']) {
      const r = await d.inject('alice', { method: 'POST', url: `/container/v1/containers/nope/${action}`, headers: { ...json, 'content-length': '0' }, payload: '' });
      assert.equal(r.statusCode, 404, `${action}: ${r.body}`);
    }
    const exec = await d.inject('alice', { method: 'POST', url: '/container/v1/containers/nope/execute?command=echo+hi&run=True&interactive=False', headers: { ...json, 'content-length': '0' }, payload: '' });
    assert.equal(exec.statusCode, 404, exec.body);
    const unknown = await d.inject('alice', { method: 'GET', url: '/container/v1/containers/nope?verbose=1', headers: json });
    assert.equal(unknown.statusCode, 400);
    assert.match(unknown.json().errors[0].title, /^Invalid input for field\/attribute verbose. verbose is not a known field/);
  });

  it('a body nesting deeper than the cap is refused before it is parsed; the depth count skips strings', async () => {
    const deep = '['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1);
    const r = await d.inject('alice', { method: 'POST', url: '/image/v2/images', headers: { 'content-type': 'application/json' }, payload: `{"name": ${deep}}` });
    assert.equal(r.statusCode, 400);
    assert.match(r.json().message, /deeper than 64 levels/);
    assert.equal(jsonDepth('{"a": "[[[[\\"[[["}', 10), 1);
    assert.equal(jsonDepth('[[1], {"a": [2]}]', 10), 3);
    assert.equal(jsonDepth('['.repeat(1000), 10), 11, 'counts no further than the cap');
  });
});
