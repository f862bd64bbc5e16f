import { strict as assert } from 'assert';
import type { ApiModule } from '../../sandbox/cloudlet/context';
import { ApiError, CloudletError, ERROR_CODES, type ErrorCode } from '../../sandbox/client';
import { startUnitDaemon, type UnitDaemon } from './helpers/inProcessDaemon';
import { NO_BODY, NO_QUERY, params } from '../../sandbox/cloudlet/api/schemas/common';

/** A module whose routes throw the error their URL names, as a route and as a job. */
function throwing(serviceType: string, prefix: string): ApiModule {
  return {
    serviceType, prefix, migrate: () => {},
    routes(app, ctx) {
      app.get<{ Params: { code: ErrorCode } }>('/throw/:code', {
        schema: { querystring: NO_QUERY, params: params(['code', { type: 'string', enum: [...ERROR_CODES] }]) },
      }, async (req) => {
        ctx.auth(req);
        throw new CloudletError(req.params.code, `thrown ${req.params.code}`, { hint: `fix ${req.params.code}` });
      });
      app.post<{ Params: { code: ErrorCode } }>('/jobs/:code', {
        schema: { querystring: NO_QUERY, params: params(['code', { type: 'string', enum: [...ERROR_CODES] }]), body: NO_BODY },
      }, async (req) => {
        const a = ctx.auth(req);
        return { job_id: ctx.jobs.start('test', a.projectId, undefined, async () => { throw new CloudletError(req.params.code, 'job broke', { hint: 'try again' }); }) };
      });
      app.get('/crash', { schema: { querystring: NO_QUERY } }, async () => { throw new TypeError('secret internals at /home/daemon'); });
    },
  };
}

describe('error codes on the wire', () => {
  let d: UnitDaemon;
  before(async () => { d = await startUnitDaemon([throwing('compute', '/compute/v2.1'), throwing('image', '/image'), throwing('reservation', '/reservation/v1')]); });
  after(async () => { await d.close(); });

  it('every code thrown by a route arrives at the client as itself, with its hint, in each service\'s OpenStack body', async () => {
    const c = await d.client('alice');
    for (const service of ['compute', 'image', 'reservation']) {
      for (const code of ERROR_CODES) {
        const e = await c.call(service, 'GET', `/throw/${code}`).then(() => undefined, (x: unknown) => x);
        assert.ok(e instanceof ApiError, `${service} ${code}: ${String(e)}`);
        assert.equal(e.code, code, `${service}: ${code} arrived as ${e.code}`);
        assert.equal(e.hint, `fix ${code}`);
        // The hint is in the OpenStack message (for OpenStack clients) but only once in the rebuilt error.
        assert.equal(e.message, `${service}: thrown ${code}`);
      }
    }
  });

  it('keeps the upstream shape: Nova fault first, Glance flat, Blazar error_code; cloudlet_error beside', async () => {
    const nova = await d.inject('alice', { method: 'GET', url: '/compute/v2.1/throw/Corrupt' });
    assert.equal(nova.statusCode, 400);
    assert.deepEqual(Object.keys(nova.json()), ['badRequest', 'cloudlet_error']);
    assert.deepEqual(nova.json(), { badRequest: { code: 400, message: 'thrown Corrupt (fix Corrupt)' }, cloudlet_error: { code: 'Corrupt', hint: 'fix Corrupt' } });
    const glance = (await d.inject('alice', { method: 'GET', url: '/image/throw/Mismatch', headers: { accept: 'application/json' } })).json();
    assert.equal(glance.code, '400 Bad Request');
    assert.deepEqual(glance.cloudlet_error, { code: 'Mismatch', hint: 'fix Mismatch' });
    // Without an Accept of JSON (glanceclient), Glance answers in HTML as webob renders it; the code rides in a comment.
    const html = await d.inject('alice', { method: 'GET', url: '/image/throw/Mismatch', headers: { accept: '*/*' } });
    assert.equal(html.statusCode, 400);
    assert.match(String(html.headers['content-type']), /^text\/html/);
    assert.match(html.body, /<h1>400 Bad Request<\/h1>\n {2}thrown Mismatch \(fix Mismatch\)<br \/><br \/>/);
    assert.match(html.body, /<!-- cloudlet_error: \{"code":"Mismatch","hint":"fix Mismatch"\} -->/);
    const blazar = (await d.inject('alice', { method: 'GET', url: '/reservation/v1/throw/Conflict' })).json();
    assert.equal(blazar.error_code, 409);
    assert.deepEqual(blazar.cloudlet_error, { code: 'Conflict', hint: 'fix Conflict' });
  });

  it('401, 404 of unknown paths, schema failures and crashes carry codes too; a crash shows nothing of the daemon', async () => {
    const unauth = await d.inject(undefined, { method: 'GET', url: '/compute/v2.1/throw/Corrupt' });
    assert.equal(unauth.statusCode, 401);
    assert.equal(unauth.json().cloudlet_error.code, 'Unauthorized');
    assert.equal((await d.inject('alice', { method: 'GET', url: '/compute/v2.1/nothing-here' })).json().cloudlet_error.code, 'NotFound');
    const invalid = await d.inject('alice', { method: 'GET', url: '/compute/v2.1/throw/NoSuchCode' });
    assert.equal(invalid.statusCode, 400);
    assert.equal(invalid.json().cloudlet_error.code, 'BadInput');
    const crash = await d.inject('alice', { method: 'GET', url: '/compute/v2.1/crash' });
    assert.equal(crash.statusCode, 500);
    assert.equal(crash.json().cloudlet_error.code, 'Internal');
    assert.doesNotMatch(crash.body, /secret internals/);
    assert.ok(d.logs.some((l) => l.includes('secret internals')), 'the crash is in the daemon log');
  });

  it('a job that fails keeps its code and hint: in the job record and at the end of its event stream', async () => {
    const c = await d.client('alice');
    for (const code of ['Corrupt', 'Mismatch', 'MissingBase'] as const) {
      const { job_id } = await c.call<{ job_id: string }>('compute', 'POST', `/jobs/${code}`);
      const end = await c.watchJob(job_id);
      assert.equal(end.status, 'ERROR');
      assert.deepEqual(end.fault, { code, message: 'job broke', hint: 'try again' });
      const job = await c.getJob(job_id);
      assert.deepEqual(job.fault, { code, message: 'job broke', hint: 'try again' });
      assert.match(job.error ?? '', /job broke/);
    }
  });
});
