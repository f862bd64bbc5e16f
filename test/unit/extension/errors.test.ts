import { strict as assert } from 'assert';
import { classifyError } from '../../../extension/state/errors';
import { ApiError, CertificateError } from '../../../sandbox/client';
import { CloudletError } from '../../../sandbox/common/errors';
import { redactUrl, formatCall } from '../../../extension/state/apiLog';

describe('extension error presentation', () => {
  it('daemon unreachable: a message with Retry', async () => {
    // What the real client throws when nothing listens: a fetch to a closed loopback port.
    let err: unknown;
    try { await fetch('http://127.0.0.1:1/'); } catch (e) { err = new CloudletError('Unavailable', `GET http://127.0.0.1:1/: ${((e as Error).cause as Error).message}`, { hint: 'is the cloudlet running and reachable?' }); }
    const shown = classifyError(err, 'edge1');
    assert.equal(shown.kind, 'unreachable');
    assert.deepEqual(shown.actions, ['Retry', 'Show Log']);
    assert.match(shown.message, /Cannot reach the cloudlet daemon \(edge1\)/);
  });

  it('a refused certificate: an unknown issuer offers "Trust Certificate...", a changed one is modal with nothing to click through', () => {
    const presented = { fingerprint: 'AB:CD', subject: 'CN=edge1', issuer: 'CN=edge1', validFrom: '', validTo: '', names: [] };
    const unknown = classifyError(new CertificateError('unknown-issuer', '127.0.0.2:8774', presented), 'edge1');
    assert.equal(unknown.kind, 'untrusted');
    assert.deepEqual(unknown.actions, ['Trust Certificate...', 'Show Log']);
    assert.ok(!unknown.modal);
    const changed = classifyError(new CertificateError('changed', '127.0.0.2:8774', presented, '01:02'), 'edge1');
    assert.equal(changed.kind, 'untrusted');
    assert.equal(changed.modal, true);
    assert.deepEqual(changed.actions, ['Show Log']);
    assert.match(changed.message, /REFUSED.*CHANGED/);
    assert.deepEqual(classifyError(new CertificateError('expired', 'h:1', presented)).actions, ['Show Log']);
  });

  it('17.10: a job that could not reach a registry names the registry, not "the cloudlet daemon"', () => {
    const e = Object.assign(new CloudletError('Unavailable', 'Publishing app failed: cannot reach the registry 127.0.0.1:5000 (ECONNREFUSED)'), { fromJob: true });
    const shown = classifyError(e, 'publishOverlay');
    assert.doesNotMatch(shown.message, /cloudlet daemon/);
    assert.match(shown.message, /registry 127\.0\.0\.1:5000/);
    assert.notEqual(shown.kind, 'unreachable');
  });

  it('a 503 answer (over capacity) is not "unreachable"', () => {
    assert.notEqual(classifyError(new ApiError(503, 'compute: no capacity', 'POST', 'u', {})).kind, 'unreachable');
  });

  it('wrong credentials: Update Credentials', () => {
    const shown = classifyError(new ApiError(401, 'identity: The request you have made requires authentication.', 'POST', 'u', {}));
    assert.equal(shown.kind, 'unauthorized');
    assert.equal(shown.actions[0], 'Update Credentials');
    assert.match(shown.message, /^Wrong credentials/);
  });

  it('a registry refusing an oci:// pull (403 + RegistryRefused) is about the registry login, not the cloudlet\'s credentials (review12 F6)', () => {
    const body = { cloudlet_error: { code: 'RegistryRefused', message: 'overlay_url oci://r:5000/a:v1: registry r:5000 requires a login' } };
    const shown = classifyError(new ApiError(403, 'overlay_url oci://r:5000/a:v1: registry r:5000 requires a login', 'POST', 'u', body));
    assert.equal(shown.kind, 'registryRefused');
    assert.ok(!shown.actions.includes('Update Credentials'));
    assert.match(shown.message, /registry refused/);
    assert.match(shown.message, /cloudlet registry login|docker login/);
    assert.equal(classifyError(new ApiError(401, 'x', 'POST', 'u', { cloudlet_error: { code: 'Unauthorized', message: 'x' } })).kind, 'unauthorized', 'the cloudlet\'s own 401 still is');
    assert.notEqual(classifyError(new ApiError(403, 'registry quota', 'POST', 'u', { cloudlet_error: { code: 'Forbidden', message: 'registry quota' } })).kind, 'registryRefused', 'the cloudlet\'s own 403 is not, whatever its words');
  });

  it('a cloudlet lacking the base says so, by the code the daemon sent (not by the words)', () => {
    const body = { badRequest: { code: 400, message: 'this cloudlet does not have base 1234abcd' }, cloudlet_error: { code: 'MissingBase' } };
    const a = classifyError(new ApiError(400, 'compute: this cloudlet does not have base 1234abcd', 'POST', 'u', body));
    assert.equal(a.kind, 'missingBase');
    assert.match(a.message, /lacks the base VM/);
    assert.equal(classifyError(new CloudletError('MissingBase', 'Synthesis failed: needs base abc')).kind, 'missingBase');
    // The same words without the code are just an error: no guessing from messages.
    assert.equal(classifyError(new ApiError(400, 'compute: this cloudlet does not have base 1234abcd', 'POST', 'u', {})).kind, 'other');
    assert.equal(classifyError(new CloudletError('Mismatch', 'Synthesis failed: base abc not found here')).kind, 'other');
  });

  it('cancelled is information, not an error', () => {
    const c = classifyError(new CloudletError('Cancelled', 'cancelled'));
    assert.equal(c.kind, 'cancelled');
    assert.equal(c.severity, 'info');
  });

  it('a missing Node/CLI points to the settings', () => {
    const m = classifyError(new CloudletError('MissingTool', 'No Node.js found on PATH', { hint: 'Install Node.js 20' }));
    assert.equal(m.kind, 'missingTool');
    assert.ok(m.actions.includes('Open Settings'));
    assert.match(m.message, /Install Node\.js 20/);
  });

  it('the API log line has method, URL, status, time and no secret', () => {
    assert.equal(formatCall({ method: 'get', url: 'http://127.0.0.2:8774/compute/v2.1/servers/detail', status: 200, ms: 12.4 }), 'GET http://127.0.0.2:8774/compute/v2.1/servers/detail 200 12ms');
    assert.equal(redactUrl('http://u:pw@127.0.0.1/x?token=abc&limit=2'), 'http://127.0.0.1/x?token=***&limit=2');
    assert.match(formatCall({ method: 'POST', url: 'http://127.0.0.1:1/identity/v3/auth/tokens', status: 'error', ms: 3, error: 'ECONNREFUSED' }), /failed \(ECONNREFUSED\)/);
  });
});
