/**
 * Event streams end with their token (issue 11 item 6): the general /events stream and a job's
 * progress stream send `token-ended` and close when the token is revoked (no event after it) or
 * expires (closed at the expiry, even on a quiet stream); the client turns that into Unauthorized.
 */
import { strict as assert } from 'assert';
import type { ApiModule } from '../../sandbox/cloudlet/context';
import { readSse, type SseMessage } from '../../sandbox/client/sse';
import { isCloudletError } from '../../sandbox/common/errors';
import { startUnitDaemon, UNIT_USERS, type UnitDaemon } from './helpers/inProcessDaemon';
import { NO_BODY, NO_QUERY } from '../../sandbox/cloudlet/api/schemas/common';

/** A job that reports progress every 50 ms until cancelled. */
const ticker: ApiModule = {
  serviceType: 'compute', prefix: '/compute/v2.1', migrate: () => {},
  routes(app, ctx) {
    app.post('/tick', { schema: { querystring: NO_QUERY, body: NO_BODY } }, async (req) => {
      const a = ctx.auth(req);
      return { job_id: ctx.jobs.start('tick', a.projectId, undefined, async (job) => {
        for (let i = 0; !job.signal.aborted; i++) {
          job.progress({ phase: 'tick', done: i });
          await new Promise((r) => setTimeout(r, 50));
        }
      }) };
    });
  },
};

async function login(d: UnitDaemon, user: 'alice' | 'bob'): Promise<string> {
  const r = await d.daemon.app.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: { auth: {
    identity: { methods: ['password'], password: { user: { name: user, password: UNIT_USERS[user] } } },
    scope: { project: { name: user === 'alice' ? 'demo' : 'other' } } } } });
  return r.headers['x-subject-token'] as string;
}

/** Reads a stream in the background: every message, and when (if) it ended. */
function follow(d: UnitDaemon, path: string, token: string) {
  const got: SseMessage[] = [];
  const state = { ended: false };
  const done = (async () => {
    const res = await fetch(`${d.daemon.url}/cloudlet/v1${path}`, { headers: { 'x-auth-token': token, accept: 'text/event-stream' } });
    assert.equal(res.status, 200);
    for await (const m of readSse(res.body!)) got.push(m);
    state.ended = true;
  })();
  return { got, state, done };
}

const until = async (what: string, cond: () => boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('event streams end with their token', function () {
  this.timeout(60_000);

  describe('revocation', () => {
    let d: UnitDaemon;
    before(async () => { d = await startUnitDaemon([ticker]); });
    after(async () => { await d.close(); });

    it('/events: no change event after the token is revoked; the stream says so and closes', async () => {
      const t = await login(d, 'alice');
      const s = follow(d, '/events', t);
      await new Promise((r) => setTimeout(r, 200));
      d.daemon.events.publish('servers', { id: 'before', project_id: (await d.daemon.identity.validate(t))!.projectId });
      await until('the first event', () => s.got.length === 1);
      const projectId = (await d.daemon.identity.validate(t))!.projectId;
      const revoked = await d.daemon.app.inject({ method: 'DELETE', url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': t, 'x-subject-token': t } });
      assert.equal(revoked.statusCode, 204);
      d.daemon.events.publish('servers', { id: 'after', project_id: projectId });
      await until('the stream to end', () => s.state.ended);
      assert.deepEqual(s.got.map((m) => m.event), ['change', 'token-ended']);
      assert.deepEqual(JSON.parse(s.got[1].data), { reason: 'revoked' });
      assert.doesNotMatch(s.got.map((m) => m.data).join(), /"after"/);
    });

    it('a job stream: progress stops at the revocation, the job goes on', async () => {
      const t = await login(d, 'bob');
      const other = await login(d, 'bob');
      const { job_id } = (await d.daemon.app.inject({ method: 'POST', url: '/compute/v2.1/tick', headers: { 'x-auth-token': t } })).json();
      const s = follow(d, `/jobs/${job_id}/events`, t);
      await until('progress', () => s.got.length >= 3);
      await d.daemon.app.inject({ method: 'DELETE', url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': other, 'x-subject-token': t } });
      await until('the stream to end', () => s.state.ended);
      const last = s.got[s.got.length - 1];
      assert.equal(last.event, 'token-ended');
      assert.deepEqual(s.got.slice(0, -1).map((m) => m.event).filter((e) => e !== 'progress'), []);
      assert.equal(d.daemon.jobs.get(job_id)!.status, 'RUNNING', 'the job itself was stopped');
      d.daemon.jobs.cancel(job_id);
    });
  });

  describe('expiry', () => {
    let d: UnitDaemon;
    before(async () => { d = await startUnitDaemon([ticker], { token_ttl_seconds: 2 }); });
    after(async () => { await d.close(); });

    it('a quiet /events stream closes when its token expires; the client gets Unauthorized', async () => {
      const t = await login(d, 'alice');
      const expiresAt = Date.parse((await d.daemon.identity.validate(t))!.expiresAt);
      const s = follow(d, '/events', t);
      await until('the stream to end at the expiry', () => s.state.ended, 20_000);
      assert.ok(Date.now() >= expiresAt, 'closed before the expiry');
      assert.deepEqual(s.got.map((m) => [m.event, m.data]), [['token-ended', '{"reason":"expired"}']]);
      const c = await d.client('alice');
      const e = await c.watchEvents(() => {}, new AbortController().signal).then(() => undefined, (x: unknown) => x);
      assert.ok(isCloudletError(e, 'Unauthorized') && /token expired while watching events/.test(e.message), String(e));
    });

    it('following a job with the client ends Unauthorized at the expiry; the job goes on', async () => {
      const c = await d.client('bob');
      const { job_id } = await c.call<{ job_id: string }>('compute', 'POST', '/tick', {});
      let progress = 0;
      const e = await c.watchJob(job_id, () => { progress++; }).then(() => undefined, (x: unknown) => x);
      assert.ok(isCloudletError(e, 'Unauthorized') && /token expired while following job/.test(e.message), String(e));
      assert.ok(progress > 0);
      assert.equal(d.daemon.jobs.get(job_id)!.status, 'RUNNING');
      d.daemon.jobs.cancel(job_id);
    });
  });
});
