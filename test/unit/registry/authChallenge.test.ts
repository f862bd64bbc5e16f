import { strict as assert } from 'assert';
import { parseAuthChallenge } from '../../../sandbox/registry/authChallenge';

describe('WWW-Authenticate parsing', () => {
  it('reads Basic and Bearer challenges with quoted and bare params', () => {
    assert.deepEqual(parseAuthChallenge('Basic realm="cloudlet-test"'), { scheme: 'basic', params: { realm: 'cloudlet-test' } });
    assert.deepEqual(parseAuthChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push"'), {
      scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:team/app:pull,push' },
    });
    assert.deepEqual(parseAuthChallenge('Bearer realm=https://a/t, service=reg, error="insufficient_scope"'), {
      scheme: 'bearer', params: { realm: 'https://a/t', service: 'reg', error: 'insufficient_scope' },
    });
  });

  it('prefers a Bearer challenge among several headers; nothing for nothing', () => {
    assert.equal(parseAuthChallenge(['Basic realm="x"', 'Bearer realm="y"'])?.scheme, 'bearer');
    assert.equal(parseAuthChallenge(undefined), undefined);
  });
});
