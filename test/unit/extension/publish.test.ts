import { strict as assert } from 'assert';
import { isAuthError, overlayPublishEnded, overlayPublishing, parseRegistrySecret, parseTarget, publishReference, publishTag, registryHostOf, registrySecretKey } from '../../../extension/state/publish';
import { initialOverlayState } from '../../../extension/state/panels';
import type { OverlayPanelState } from '../../../extension/protocol';
import type { JobEnd } from '../../../extension/api';
import type { ErrorCode } from '../../../sandbox/client';

describe('one-click Publish state', () => {
  it('the default registry setting gives HOST/REPO:NAME-ID references', () => {
    assert.deepEqual(parseTarget('127.0.0.1:5000/overlays'), { registry: '127.0.0.1:5000', repository: 'overlays' });
    assert.deepEqual(parseTarget('oci://ghcr.io/team/apps/'), { registry: 'ghcr.io', repository: 'team/apps' });
    for (const bad of ['', 'overlays', '127.0.0.1:5000/', '127.0.0.1:5000/Upper', 'host/a b']) assert.equal(parseTarget(bad), undefined, bad);
    assert.equal(publishTag('Sample Backend!', '1a2b3c4d-5e6f-7a8b'), 'sample-backend-1a2b3c4d');
    assert.equal(publishTag('---', ''), 'overlay');
    assert.equal(publishReference('127.0.0.1:5000/overlays', 'sample-backend', 'deadbeef-0000'), '127.0.0.1:5000/overlays:sample-backend-deadbeef');
    assert.equal(publishReference('nonsense', 'x', 'y'), undefined);
    assert.equal(registryHostOf('oci://127.0.0.1:5000/overlays:x'), '127.0.0.1:5000');
    assert.equal(registrySecretKey('127.0.0.1:5000'), 'cloudlet.registry/127.0.0.1:5000');
  });

  it('credentials are asked for only on auth failures; secrets parse safely', () => {
    const failed = (code: ErrorCode, message: string): JobEnd => ({ status: 'ERROR', error: message, fault: { code, message } });
    assert.ok(isAuthError(failed('Unauthorized', 'registry 127.0.0.1:5000 requires a login')));
    assert.ok(isAuthError(failed('Forbidden', 'push: registry 127.0.0.1:5000 denied access (HTTP 403)')));
    assert.ok(!isAuthError(failed('Unavailable', 'connection refused after 6 attempts (401 retries)')));
    assert.ok(!isAuthError(failed('Unavailable', 'the TLS certificate of registry 127.0.0.1:5000 is not trusted')));
    assert.ok(!isAuthError({ status: 'ERROR', error: '401 Unauthorized' }));
    assert.ok(!isAuthError({ status: 'CANCELLED' }));
    assert.deepEqual(parseRegistrySecret('{"username":"u","password":"p"}'), { username: 'u', password: 'p' });
    for (const bad of [undefined, '', 'not json', '{"username":""}', '{"password":"p"}']) assert.equal(parseRegistrySecret(bad), undefined);
  });

  it('the Overlay panel shows publishing as a phase, then the reference (kept on failure)', () => {
    let s: OverlayPanelState = { ...initialOverlayState('ov'), status: 'done', canPublish: true };
    s = overlayPublishing(s);
    assert.equal(s.publishing, true);
    s = overlayPublishing(s, { phase: 'upload', done: 10, total: 100, at: 1 });
    assert.equal(s.phases.at(-1)!.name, 'publish');
    assert.equal(s.phases.at(-1)!.done, 10);
    const failed = overlayPublishEnded(s, { status: 'ERROR', error: 'boom' });
    assert.equal(failed.publishing, false);
    assert.match(failed.error!, /Publishing failed: boom/);
    assert.equal(failed.publishedRef, undefined);
    const done = overlayPublishEnded(s, { status: 'DONE' }, 'oci://h/r:t');
    assert.equal(done.publishedRef, 'oci://h/r:t');
    assert.equal(done.error, undefined);
    assert.ok(done.phases.every((p) => p.endedAt !== undefined));
    assert.equal(overlayPublishEnded(done, { status: 'CANCELLED' }).publishedRef, 'oci://h/r:t');
  });
});
