import { strict as assert } from 'assert';
import { formatReference, parseReference } from '../../../sandbox/registry/reference';
import { isCloudletError } from '../../../sandbox/common/errors';

const D = 'sha256:' + 'a'.repeat(64);

describe('registry references', () => {
  it('parses HOST[:PORT]/REPO[:TAG][@DIGEST] with or without oci://', () => {
    assert.deepEqual(parseReference('127.0.0.1:5000/team/app:v1'), { registry: '127.0.0.1:5000', repository: 'team/app', tag: 'v1', digest: undefined });
    assert.deepEqual(parseReference('oci://reg.example/app'), { registry: 'reg.example', repository: 'app', tag: 'latest', digest: undefined });
    assert.deepEqual(parseReference(`localhost:5000/a/b/c@${D}`), { registry: 'localhost:5000', repository: 'a/b/c', tag: undefined, digest: D });
    assert.deepEqual(parseReference(`oci://[::1]:5000/app:v2@${D}`), { registry: '[::1]:5000', repository: 'app', tag: 'v2', digest: D });
  });

  it('formats back, digest form preferred when known', () => {
    assert.equal(formatReference(parseReference('oci://h:1/r:t')), 'h:1/r:t');
    assert.equal(formatReference(parseReference(`h:1/r@${D}`), { oci: true }), `oci://h:1/r@${D}`);
  });

  it('refuses what is not a reference, saying why', () => {
    for (const [bad, why] of [
      ['app:v1', /must start with the registry host/],
      ['http://h/app', /only the oci:\/\/ scheme/],
      ['h:1/App', /bad repository name/],
      ['h:1/app/../x', /bad repository name/],
      ['h:1/app@sha256:xyz', /digest must be sha256/],
      ['h:1/app:bad tag', /bad tag|bad repository/],
    ] as const) {
      assert.throws(() => parseReference(bad), (e: unknown) => isCloudletError(e, 'BadInput') && why.test(e.message), bad);
    }
  });
});
