/**
 * Bad input from issue 11 (items 3 and 7), each refused with a 400 in the service's body and
 * nothing changed: JSON-Patch values of the wrong type (an array for visibility or for a custom
 * property) are refused, not compared and then stringified; image create with a size that is no
 * integer or a format that is an object; a lease update whose body is no object; a lease filter
 * nested 5,000 levels deep (the stack of whatever walks it next).
 */
import { strict as assert } from 'assert';
import * as http from 'http';
import * as path from 'path';
import { startUnitDaemon, type UnitDaemon } from '../helpers/inProcessDaemon';

describe('bad input answers 400 and changes nothing', function () {
  this.timeout(60_000);
  let d: UnitDaemon;
  before(async () => { d = await startUnitDaemon(undefined); });
  after(async () => { await d?.close(); });

  const patch = (id: string, ops: unknown) => d.inject('alice', {
    method: 'PATCH', url: `/image/v2/images/${id}`, headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' }, payload: JSON.stringify(ops),
  });

  describe('image update (JSON Patch values by schema, issue 11.3)', () => {
    let id: string;
    before(async () => {
      const r = await d.inject('alice', { method: 'POST', url: '/image/v2/images', payload: { name: 'mine', disk_format: 'raw', container_format: 'bare' } });
      assert.equal(r.statusCode, 201, r.body);
      id = r.json().id;
    });

    it('a member cannot make an image public by sending the value as an array', async () => {
      const r = await patch(id, [{ op: 'replace', path: '/visibility', value: ['public'] }]);
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().cloudlet_error.code, 'BadInput');
      assert.match(r.json().cloudlet_error.hint, /\[0\]\.value/);
      const shown = await d.inject('alice', { method: 'GET', url: `/image/v2/images/${id}` });
      assert.equal(shown.json().visibility, 'shared');
      // as a string it is the admin check that answers
      assert.equal((await patch(id, [{ op: 'replace', path: '/visibility', value: 'public' }])).statusCode, 403);
    });

    it('nor mark it a base image (custom properties are strings)', async () => {
      for (const value of [['cloudlet_base_disk'], { a: 'cloudlet_base_disk' }, 7, true, null]) {
        const r = await patch(id, [{ op: 'add', path: '/cloudlet_type', value }]);
        assert.equal(r.statusCode, 400, `${JSON.stringify(value)}: ${r.body}`);
      }
      const shown = await d.inject('alice', { method: 'GET', url: `/image/v2/images/${id}` });
      assert.equal(shown.json().cloudlet_type, undefined);
      assert.equal((await patch(id, [{ op: 'add', path: '/cloudlet_type', value: 'cloudlet_base_disk' }])).statusCode, 403);
    });

    it('core fields keep their types: sizes are integers, protected a boolean, formats from the list', async () => {
      for (const [path, value] of [['/min_disk', '10'], ['/min_ram', 1.5], ['/min_ram', -1], ['/protected', 'true'], ['/disk_format', { a: 1 }], ['/disk_format', 'exe'], ['/name', ['n']]] as const) {
        const r = await patch(id, [{ op: 'replace', path, value }]);
        assert.equal(r.statusCode, 400, `${path} ${JSON.stringify(value)}: ${r.body}`);
      }
      const ok = await patch(id, [{ op: 'replace', path: '/min_disk', value: 10 }, { op: 'add', path: '/note', value: 'kept' }]);
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal(ok.json().min_disk, 10);
      assert.equal(ok.json().note, 'kept');
    });

    it('paths name one top-level field, never an object internal', async () => {
      for (const path of ['/__proto__', '/a/b', '/', 'visibility']) {
        assert.equal((await patch(id, [{ op: 'add', path, value: 'x' }])).statusCode, 400, path);
      }
      assert.equal((await patch(id, [{ op: 'move', path: '/a', from: '/b' }])).statusCode, 400);
      assert.equal((await patch(id, { op: 'add', path: '/a', value: 'x' })).statusCode, 400, 'not an array');
    });
  });

  describe('server create and actions (issue 11.3)', () => {
    it('metadata "abc", ports "1e3", non-string metadata values and a name list are 400 naming the field; no server is made', async () => {
      const cases: Array<[unknown, RegExp]> = [
        [{ server: { name: 'x', metadata: 'abc' } }, /server\.metadata must be an object/],
        [{ server: { name: 'x', metadata: { ports: '1e3' } } }, /server\.metadata\.ports/],
        [{ server: { name: 'x', metadata: { ports: '80,8080x' } } }, /server\.metadata\.ports/],
        [{ server: { name: 'x', metadata: { a: 1 } } }, /server\.metadata\.a must be a string/],
        [{ server: { name: ['x'] } }, /server\.name must be a string/],
        [{ server: { name: 'x', flavorRef: { id: 1 } } }, /server\.flavorRef/],
        [{ server: { name: 'x' }, extra: 1 }, /extra is not a known field/],
      ];
      for (const [body, hint] of cases) {
        const r = await d.inject('alice', { method: 'POST', url: '/compute/v2.1/servers', payload: body as object });
        assert.equal(r.statusCode, 400, `${JSON.stringify(body)}: ${r.body}`);
        assert.equal(r.json().badRequest.code, 400);
        assert.match(r.json().cloudlet_error.hint, hint, JSON.stringify(body));
      }
      assert.deepEqual((await d.inject('alice', { method: 'GET', url: '/compute/v2.1/servers' })).json().servers, []);
    });

    it('an action body is one known action with its own argument', async () => {
      for (const body of [{}, { pause: null, unpause: null }, { evacuate: {} }, { reboot: { type: 'GENTLE' } }, { pause: 'now' }, { 'cloudlet-handoff': { handoff_url: 'ftp://x', dest_token: 't' } }, { 'cloudlet-overlay-finish': { 'overlay-name': 7 } }]) {
        const r = await d.inject('alice', { method: 'POST', url: '/compute/v2.1/servers/00000000-0000-0000-0000-000000000000/action', payload: body });
        assert.equal(r.statusCode, 400, `${JSON.stringify(body)}: ${r.body}`);
      }
      // well-formed: the server's absence is what answers
      assert.equal((await d.inject('alice', { method: 'POST', url: '/compute/v2.1/servers/00000000-0000-0000-0000-000000000000/action', payload: { pause: null } })).statusCode, 404);
    });
  });

  describe('image create (issue 11.7)', () => {
    it('min_disk "abc" and disk_format {"a": 1} are 400, not 500; no image is left', async () => {
      const before = (await d.inject('alice', { method: 'GET', url: '/image/v2/images' })).json().images.length;
      for (const body of [{ min_disk: 'abc' }, { disk_format: { a: 1 } }, { min_ram: '512' }, { visibility: ['public'] }, { cloudlet_type: ['cloudlet_base_disk'] }, { name: 'x', custom: 12 }, [], 'str', 123]) {
        const r = await d.inject('alice', { method: 'POST', url: '/image/v2/images', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) });
        assert.equal(r.statusCode, 400, `${JSON.stringify(body)}: ${r.body}`);
        assert.equal(r.json().code, '400 Bad Request');
        assert.equal(r.json().cloudlet_error.code, 'BadInput');
      }
      assert.equal((await d.inject('alice', { method: 'GET', url: '/image/v2/images' })).json().images.length, before);
    });
  });

  describe('leases (issue 11.7)', () => {
    let leaseId: string;
    let engine: http.Server;
    before(async () => {
      // The device's engine: answers Docker's ping (a lease reserves only devices that answer).
      const sock = path.join(d.dataDir, 'engine.sock');
      engine = http.createServer((_req, res) => res.end('OK'));
      await new Promise<void>((r) => engine.listen(sock, r));
      const dev = await d.inject('admin', { method: 'POST', url: '/inventory/v1/hardware', payload: { name: 'pi-1', machine_name: 'raspberrypi4-64', engine_endpoint: `unix://${sock}` } });
      assert.equal(dev.statusCode, 201, dev.body);
      // Starting tomorrow: a device that is not reachable now may still be reserved for later.
      const at = (h: number) => new Date(Date.now() + h * 3600_000).toISOString().slice(0, 16).replace('T', ' ');
      const r = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', payload: { name: 'l1', start_date: at(24), end_date: at(25), reservations: [{ resource_type: 'device', min: 1, max: 1, resource_properties: '' }], events: [] } });
      assert.equal(r.statusCode, 201, r.body);
      leaseId = r.json().lease.id;
    });
    after(() => { engine?.close(); });

    it('a device patch takes values of each field\'s type only, and no object internals as paths', async () => {
      const patchDevice = (ops: unknown) => d.inject('admin', { method: 'PATCH', url: '/inventory/v1/hardware/pi-1', headers: { 'content-type': 'application/json-patch+json' }, payload: JSON.stringify(ops) });
      for (const ops of [[{ op: 'replace', path: '/name', value: ['pi-9'] }], [{ op: 'replace', path: '/authorized_projects', value: 'demo' }],
        [{ op: 'add', path: '/authorized_projects/-', value: { id: 'x' } }], [{ op: 'replace', path: '/properties', value: [] }],
        [{ op: 'add', path: '/properties/__proto__', value: { admin: true } }], [{ op: 'replace', path: '/project_id', value: 'x' }]]) {
        const r = await patchDevice(ops);
        assert.equal(r.statusCode, 400, `${JSON.stringify(ops)}: ${r.body}`);
      }
      const shown = await d.inject('admin', { method: 'GET', url: '/inventory/v1/hardware/pi-1' });
      assert.equal(shown.json().name, 'pi-1');
      assert.deepEqual(shown.json().authorized_projects, []);
    });

    it('an update whose body is a string or a number is 400 and the lease stays as it was', async () => {
      const was = (await d.inject('alice', { method: 'GET', url: `/reservation/v1/leases/${leaseId}` })).json().lease;
      for (const payload of ['"str"', '123', '[]', 'null', '{"lease": "x"}', '{"end_date": 5}']) {
        const r = await d.inject('alice', { method: 'PUT', url: `/reservation/v1/leases/${leaseId}`, headers: { 'content-type': 'application/json' }, payload });
        assert.equal(r.statusCode, 400, `${payload}: ${r.body}`);
        assert.equal(r.json().error_code, 400);
        assert.equal(r.json().cloudlet_error.code, 'BadInput');
      }
      assert.deepEqual((await d.inject('alice', { method: 'GET', url: `/reservation/v1/leases/${leaseId}` })).json().lease, was);
    });

    it('a filter nested 5,000 levels deep is refused (as text and as JSON), the daemon answers on', async () => {
      const nested = (n: number) => '["and", '.repeat(n) + '["==", "$name", "pi-1"]' + ']'.repeat(n);
      const end = new Date(Date.now() + 3600_000).toISOString().slice(0, 16).replace('T', ' ');
      const lease = (resource_properties: unknown) => JSON.stringify({ name: 'deep', end_date: end, reservations: [{ resource_type: 'device', min: 1, max: 1, resource_properties }] });
      const asText = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', headers: { 'content-type': 'application/json' }, payload: lease(nested(5000)) });
      assert.equal(asText.statusCode, 400, asText.body.slice(0, 300));
      assert.match(asText.json().cloudlet_error.hint, /resource_properties/);
      // within the length limit, as deep as it gets: refused by the filter's own depth cap
      const compact = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', headers: { 'content-type': 'application/json' }, payload: lease('['.repeat(5000) + ']'.repeat(5000)) });
      assert.equal(compact.statusCode, 400, compact.body.slice(0, 300));
      assert.match(compact.json().error_message, /nest deeper than 16 levels/);
      const asJson = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', headers: { 'content-type': 'application/json' }, payload: lease('@').replace('"@"', nested(5000)) });
      assert.equal(asJson.statusCode, 400, asJson.body.slice(0, 300));
      // a reasonable filter still works
      const fine = await d.inject('alice', { method: 'POST', url: '/reservation/v1/leases', headers: { 'content-type': 'application/json' }, payload: lease(nested(3)) });
      assert.notEqual(fine.statusCode, 500, fine.body);
      assert.notEqual(fine.statusCode, 400, fine.body);
      assert.equal((await d.inject('alice', { method: 'GET', url: '/reservation/v1/leases' })).statusCode, 200);
    });
  });
});
