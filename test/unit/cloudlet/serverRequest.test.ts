/** The compute API's pure request parsers: what passes is typed, what does not is a BadInput naming the field. */
import { strict as assert } from 'assert';
import { parsePorts, parseServerAction, parseServerCreate } from '../../../sandbox/cloudlet/servers/serverRequest';
import { CloudletError } from '../../../sandbox/common/errors';

const badInput = (re: RegExp) => (e: unknown) => e instanceof CloudletError && e.code === 'BadInput' && re.test(e.message);

describe('serverRequest: server create and action bodies', () => {
  it('a create: flavor and image refs reduced to ids, ports parsed, overlay_url marks a synthesis', () => {
    const r = parseServerCreate({ server: { name: 'web', flavorRef: 'http://x/compute/v2.1/flavors/2', imageRef: 'http://x/image/v2/images/abc',
      metadata: { ports: '80, 443', overlay_url: 'http://o/overlay' } } });
    assert.deepEqual(r, { name: 'web', metadata: { ports: '80, 443', overlay_url: 'http://o/overlay' }, flavorId: '2', ports: [80, 443],
      imageRef: 'http://x/image/v2/images/abc', imageId: 'abc', overlayUrl: 'http://o/overlay' });
    assert.deepEqual(parseServerCreate({ server: { name: 'b' } }), { name: 'b', metadata: {}, flavorId: '1', ports: [], imageRef: '', imageId: '' });
  });

  it('refuses what is not a server: no object, bad name, unknown flavor, metadata not an object of strings', () => {
    for (const body of [undefined, null, 'x', [], { server: [] }, { server: 'web' }]) assert.throws(() => parseServerCreate(body), badInput(/'server' object/));
    for (const name of [undefined, '', '   ', 7, 'x'.repeat(256)]) assert.throws(() => parseServerCreate({ server: { name } }), badInput(/field\/attribute name/));
    assert.throws(() => parseServerCreate({ server: { name: 'a', flavorRef: '9' } }), badInput(/Flavor 9 could not be found/));
    for (const metadata of ['abc', ['a'], 5, null]) assert.throws(() => parseServerCreate({ server: { name: 'a', metadata } }), badInput(/metadata/));
    assert.throws(() => parseServerCreate({ server: { name: 'a', metadata: { k: 1 } } }), badInput(/value of k must be a string/));
  });

  it('ports: plain decimal TCP ports only', () => {
    assert.deepEqual(parsePorts(undefined), []);
    assert.deepEqual(parsePorts(''), []);
    assert.deepEqual(parsePorts('22,8080'), [22, 8080]);
    for (const p of ['1e3', '0', '65536', '80,', 'http', '0x50', '-1', '8.5']) assert.throws(() => parsePorts(p), badInput(/metadata.ports/), p);
  });

  it('actions: exactly one known key; handoff and overlay-finish arguments checked', () => {
    assert.deepEqual(parseServerAction({ pause: null }), { action: 'pause' });
    assert.deepEqual(parseServerAction({ 'os-stop': {} }), { action: 'os-stop' });
    assert.deepEqual(parseServerAction({ 'cloudlet-overlay-finish': { 'overlay-name': 'o' } }), { action: 'cloudlet-overlay-finish', overlayName: 'o' });
    assert.deepEqual(parseServerAction({ 'cloudlet-overlay-finish': null }), { action: 'cloudlet-overlay-finish' });
    assert.deepEqual(parseServerAction({ 'cloudlet-handoff': { handoff_url: 'https://d/compute/v2.1', dest_token: 't', dest_vmname: 'moved' } }),
      { action: 'cloudlet-handoff', handoff: { handoffUrl: 'https://d/compute/v2.1', destToken: 't', destVmName: 'moved' } });
    for (const body of [undefined, {}, [], { pause: null, unpause: null }]) assert.throws(() => parseServerAction(body), badInput(/exactly one key/));
    assert.throws(() => parseServerAction({ evacuate: { host: 'x' } }), badInput(/action evacuate is not supported/));
    assert.throws(() => parseServerAction({ reboot: { type: 'GENTLE' } }), badInput(/SOFT or HARD/));
    assert.throws(() => parseServerAction({ 'cloudlet-handoff': { handoff_url: 'file:///etc', dest_token: 't' } }), badInput(/handoff_url/));
    assert.throws(() => parseServerAction({ 'cloudlet-handoff': { handoff_url: 'http://d' } }), badInput(/dest_token/));
    assert.throws(() => parseServerAction({ 'cloudlet-handoff': { handoff_url: 'http://d', dest_token: 't', dest_tls_fingerprint: 5 } }), badInput(/dest_tls_fingerprint/));
    assert.throws(() => parseServerAction({ 'cloudlet-overlay-finish': { 'overlay-name': ['x'] } }), badInput(/overlay-name/));
  });
});
