import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspect } from 'util';
import { Credentials, dockerConfigPath, lookupCredentials, removeCredentials, storeCredentials } from '../../../sandbox/registry/credentials';
import { registryAuthFor } from '../../../sandbox/registry/synthesisLogin';

describe('registry credentials (Docker config file)', () => {
  let dir: string;
  let saved: string | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'creds-')); saved = process.env.DOCKER_CONFIG; process.env.DOCKER_CONFIG = dir; });
  afterEach(() => { if (saved === undefined) delete process.env.DOCKER_CONFIG; else process.env.DOCKER_CONFIG = saved; fs.rmSync(dir, { recursive: true, force: true }); });

  it('honours DOCKER_CONFIG and reads auths written by docker login (any key form)', () => {
    assert.equal(dockerConfigPath(), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
      auths: { 'https://reg.example:5000/v1/': { auth: Buffer.from('bob:pa:ss').toString('base64') } }, credsStore: 'desktop',
    }));
    const c = lookupCredentials('reg.example:5000');
    assert.equal(c?.username, 'bob');
    assert.equal(c?.basicHeader(), 'Basic ' + Buffer.from('bob:pa:ss').toString('base64'));
    assert.equal(lookupCredentials('other:5000'), undefined);
  });

  it('stores and removes entries with mode 0600, keeping the rest of the file', () => {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ credsStore: 'desktop', auths: {} }));
    storeCredentials('127.0.0.1:5000', new Credentials('alice', 's3cret'));
    const file = path.join(dir, 'config.json');
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(j.credsStore, 'desktop');
    assert.equal(Buffer.from(j.auths['127.0.0.1:5000'].auth, 'base64').toString(), 'alice:s3cret');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.ok(removeCredentials('127.0.0.1:5000'));
    assert.equal(lookupCredentials('127.0.0.1:5000'), undefined);
  });

  it('never shows the password when logged or serialised', () => {
    const c = new Credentials('alice', 'Sup3rSecret');
    assert.ok(!JSON.stringify({ c }).includes('Sup3rSecret'));
    assert.ok(!inspect(c).includes('Sup3rSecret'));
    assert.ok(!String(Object.values(c)).includes('Sup3rSecret'));
  });

  it('registryAuthFor: the login a client sends with an oci:// synthesis is the user\'s own for that registry, else none', () => {
    storeCredentials('reg.example:5000', new Credentials('bob', 'pw:1'));
    assert.deepEqual(registryAuthFor('oci://reg.example:5000/team/app:v1'), { username: 'bob', password: 'pw:1' });
    assert.deepEqual(registryAuthFor('oci://REG.example:5000/team/app@sha256:' + 'a'.repeat(64)), { username: 'bob', password: 'pw:1' });
    assert.equal(registryAuthFor('oci://other.example/team/app:v1'), undefined, 'no login stored for that registry');
    assert.equal(registryAuthFor('https://reg.example:5000/x.overlay'), undefined, 'not oci://: nothing is sent');
  });
});
