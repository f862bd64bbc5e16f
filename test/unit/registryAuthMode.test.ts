/**
 * When a client sends the user's registry login with an oci:// synthesis (createSynthesisServer):
 * 'auto' asks without it and retries once with it only after the registry refused the anonymous pull;
 * never over plain http to a cloudlet off this machine; an unreadable stored login does not block
 * the anonymous try. The cloudlet here is a recording stand-in for CloudletClient's two methods used
 * (the real daemon path is test/integration/registrySynthesis.test.ts).
 */
import { strict as assert } from 'assert';
import { ApiError, type CloudletClient } from '../../sandbox/client/client';
import { createSynthesisServer, loginMayGoTo, type RegistryLogin } from '../../sandbox/registry/synthesisLogin';
import { CloudletError, isCloudletError } from '../../sandbox/common/errors';

const LOGIN = { username: 'alice', password: 'S3cret' };
const OCI = 'oci://registry.example:5000/team/app:v1';

/** A cloudlet that refuses an anonymous pull with `refusal` (when given) and records every create. */
function cloudlet(url: string, refusal?: ApiError) {
  const sent: (RegistryLogin | undefined)[] = [];
  const c = {
    endpoint: () => url,
    createServer: async (o: { registryAuth?: RegistryLogin }) => {
      sent.push(o.registryAuth);
      if (!o.registryAuth && refusal) throw refusal;
      return { id: 'srv', jobId: 'job' };
    },
  } as unknown as CloudletClient;
  return { c, sent };
}
const refused = (code: string, status = 403, message = 'overlay_url oci://x: registry registry.example:5000 requires a login') =>
  new ApiError(status, message, 'POST', 'https://c/servers', { cloudlet_error: { code, message } });

describe('createSynthesisServer: the registry login goes to a cloudlet only when needed', () => {
  it('auto: a public pull sends no login (and the login is not even read)', async () => {
    const { c, sent } = cloudlet('https://c.example/compute/v2.1');
    let read = 0;
    await createSynthesisServer(c, { name: 'x', overlayUrl: OCI }, { login: () => { read++; return LOGIN; } });
    assert.deepEqual(sent, [undefined]);
    assert.equal(read, 0);
  });

  it('auto: after the registry refused the anonymous pull (403 RegistryRefused), one retry with the login', async () => {
    for (const message of ['overlay_url oci://x: registry registry.example:5000 requires a login', 'overlay_url oci://x: denied']) {
      const { c, sent } = cloudlet('https://c.example/compute/v2.1', refused('RegistryRefused', 403, message));
      assert.deepEqual(await createSynthesisServer(c, { name: 'x', overlayUrl: OCI }, { login: () => LOGIN }), { id: 'srv', jobId: 'job' });
      assert.deepEqual(sent, [undefined, LOGIN]);
    }
  });

  it('auto: other refusals (the cloudlet\'s own 401/403, a 400) are not retried with the login', async () => {
    for (const e of [refused('Unauthorized', 401), refused('Forbidden', 403, 'policy does not allow compute:create'), refused('Forbidden', 403, 'registry quota: the code decides, not the words'), refused('BadInput', 400)]) {
      const { c, sent } = cloudlet('https://c.example/compute/v2.1', e);
      await assert.rejects(createSynthesisServer(c, { name: 'x', overlayUrl: OCI }, { login: () => LOGIN }), (x: unknown) => x === e);
      assert.deepEqual(sent, [undefined]);
    }
  });

  it('auto: no stored login, an empty password, or an unreadable credentials file: the registry\'s refusal stands (with a warning)', async () => {
    const warnings: string[] = [];
    for (const login of [() => undefined, () => ({ username: 'u', password: '' }), () => { throw new CloudletError('BadInput', 'the Docker credentials file x is not valid JSON'); }]) {
      const e = refused('RegistryRefused');
      const { c, sent } = cloudlet('https://c.example/compute/v2.1', e);
      await assert.rejects(createSynthesisServer(c, { name: 'x', overlayUrl: OCI }, { login, warn: (m) => warnings.push(m) }), (x: unknown) => x === e);
      assert.deepEqual(sent, [undefined]);
    }
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /not valid JSON/);
  });

  it('never over plain http to a cloudlet off this machine; loopback http and https are fine', async () => {
    const { c, sent } = cloudlet('http://192.0.2.10:8774/compute/v2.1', refused('RegistryRefused'));
    await assert.rejects(createSynthesisServer(c, { name: 'x', overlayUrl: OCI }, { login: () => LOGIN }),
      (e: unknown) => isCloudletError(e, 'BadInput') && /over plain http/.test((e as Error).message));
    assert.deepEqual(sent, [undefined], 'the login never left');
    await assert.rejects(createSynthesisServer(cloudlet('http://192.0.2.10:8774').c, { name: 'x', overlayUrl: OCI }, { mode: 'always', login: () => LOGIN }), /over plain http/);
    for (const ok of ['https://192.0.2.10', 'http://127.0.0.3:8774', 'http://localhost:1', 'http://[::1]:1']) assert.ok(loginMayGoTo(ok), ok);
    for (const no of ['http://192.0.2.10', 'http://127.evil.example', 'http://localhost.evil.example']) assert.ok(!loginMayGoTo(no), no);
  });

  it('always sends it at once; never and non-oci URLs send none', async () => {
    const a = cloudlet('https://c.example');
    await createSynthesisServer(a.c, { name: 'x', overlayUrl: OCI }, { mode: 'always', login: () => LOGIN });
    assert.deepEqual(a.sent, [LOGIN]);
    const n = cloudlet('https://c.example', refused('RegistryRefused'));
    await assert.rejects(createSynthesisServer(n.c, { name: 'x', overlayUrl: OCI }, { mode: 'never', login: () => LOGIN }));
    assert.deepEqual(n.sent, [undefined]);
    const h = cloudlet('https://c.example');
    await createSynthesisServer(h.c, { name: 'x', overlayUrl: 'https://o.example/x.overlay' }, { mode: 'always', login: () => LOGIN });
    assert.deepEqual(h.sent, [undefined]);
  });
});
