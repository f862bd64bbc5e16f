import { strict as assert } from 'assert';
import Database from '../../../sandbox/common/sqlite';
import { parseContainerCreate, splitCommand } from '../../../sandbox/devices/containerRequest';
import { demuxDockerStream } from '../../../sandbox/devices/containerDriver';
import { requestedVersion } from '../../../sandbox/cloudlet/api/container';
import { parseEngineEndpoint } from '../../../sandbox/devices/engineEndpoint';
import { migrateDevices } from '../../../sandbox/devices/schema';
import { DeviceInventory, adminView, publicView, deviceAttributes } from '../../../sandbox/devices/deviceInventory';
import { isCloudletError } from '../../../sandbox/common/errors';
import { ContainerService, type ContainerServiceDeps } from '../../../sandbox/devices/containerService';

describe('container API pieces', () => {
  it('splits command lines like a shell (quotes, escapes)', () => {
    assert.deepEqual(splitCommand(`sh -c "echo 'a b'; ls" x\\ y ''`), ['sh', '-c', "echo 'a b'; ls", 'x y', '']);
    assert.throws(() => splitCommand('echo "open'), (e: unknown) => isCloudletError(e, 'BadInput'));
  });
  it('parses a Zun create body with hints.reservation', () => {
    const r = parseContainerCreate({
      name: 'web', image: '127.0.0.1:5000/app:1', command: 'httpd -f -p 8080', environment: { A: 1 },
      exposed_ports: { '8080/tcp': {}, 9000: {} }, hints: { reservation: 'r1', platform_version: 2 },
    }, true);
    assert.deepEqual(r.command, ['httpd', '-f', '-p', '8080']);
    assert.deepEqual(r.environment, { A: '1' });
    assert.deepEqual(Object.keys(r.exposedPorts).sort(), ['8080/tcp', '9000/tcp']);
    assert.equal(r.reservationId, 'r1');
    assert.equal(r.network, 'host');
    assert.equal(r.run, true);
    assert.equal(parseContainerCreate({ image: 'x' }, false).reservationId, undefined);
    for (const bad of [{}, { image: 'x', exposed_ports: { abc: {} } }, { image: 'x', hints: { network: 'bridge' } }, { image: 'x', name: 'bad name' }]) {
      assert.throws(() => parseContainerCreate(bad, false), (e: unknown) => isCloudletError(e, 'BadInput'), JSON.stringify(bad));
    }
  });
  it('negotiates the container microversion', () => {
    assert.equal(requestedVersion(undefined), '1.1');
    assert.equal(requestedVersion('container 1.41'), '1.41');
    assert.equal(requestedVersion('compute 2.1, container 1.20'), '1.20');
    assert.equal(requestedVersion('container latest'), '1.41');
    assert.throws(() => requestedVersion('container 1.99'), (e: unknown) => isCloudletError(e) && e.status === 406);
    assert.throws(() => requestedVersion('container 2.0'), (e: unknown) => isCloudletError(e) && e.status === 406);
  });
  it('demultiplexes Docker log streams', () => {
    const frame = (stream: number, text: string) => {
      const b = Buffer.from(text);
      const h = Buffer.alloc(8);
      h[0] = stream;
      h.writeUInt32BE(b.length, 4);
      return Buffer.concat([h, b]);
    };
    assert.equal(demuxDockerStream(Buffer.concat([frame(1, 'out\n'), frame(2, 'err\n')])), 'out\nerr\n');
    assert.equal(demuxDockerStream(Buffer.from('plain tty text')), 'plain tty text');
  });
  it('parses engine endpoints', () => {
    assert.deepEqual(parseEngineEndpoint('unix:///tmp/d.sock'), { socketPath: '/tmp/d.sock' });
    assert.deepEqual(parseEngineEndpoint('tcp://127.0.0.5:2375'), { host: '127.0.0.5', port: 2375, protocol: 'http' });
    for (const bad of ['', 'unix://rel.sock', 'ssh://x', 'tcp://host']) assert.throws(() => parseEngineEndpoint(bad), (e: unknown) => isCloudletError(e, 'BadInput'));
  });
});

describe('DeviceInventory', () => {
  it('enrolls, patches and removes; the public view has no engine endpoint', () => {
    const db = new Database(':memory:');
    migrateDevices(db);
    const inv = new DeviceInventory(db);
    const d = inv.enroll({ name: 'pi-1', machine_name: 'raspberrypi4-64', model: 'Pi 4', engine_endpoint: 'unix:///tmp/a.sock', properties: { memory_mb: 4096 } }, 'admin');
    assert.throws(() => inv.enroll({ name: 'pi-1', machine_name: 'x', engine_endpoint: 'unix:///tmp/b.sock' }, 'admin'), (e: unknown) => isCloudletError(e, 'Conflict'));
    assert.throws(() => inv.enroll({ name: 'pi-2', engine_endpoint: 'unix:///tmp/b.sock' }, 'admin'), /machine_name is required/);
    assert.deepEqual(deviceAttributes(d), { machine_name: 'raspberrypi4-64', model: 'Pi 4', memory_mb: 4096, name: 'pi-1', uid: d.id, hardware_type: 'device.docker' });
    const p = inv.patch('pi-1', [{ op: 'add', path: '/authorized_projects/-', value: 'p1' }, { op: 'replace', path: '/properties/memory_mb', value: 8192 }]);
    assert.deepEqual(p.authorizedProjects, ['p1']);
    assert.equal(p.properties.memory_mb, 8192);
    assert.throws(() => inv.patch('pi-1', [{ op: 'replace', path: '/project_id', value: 'x' }]), /not writable/);
    assert.ok(JSON.stringify(adminView(p)).includes('unix:///tmp/a.sock'));
    assert.ok(!JSON.stringify(publicView(p)).includes('unix://'));
    inv.remove('pi-1');
    assert.equal(inv.list().length, 0);
  });
});

describe('ContainerService: names', () => {
  it('a name is looked up in the caller\'s project; an admin with all_projects also finds others\'; ids find any (then the project check)', async () => {
    const db = new Database(':memory:');
    migrateDevices(db);
    // get() of a container without an engine id reads only the database: no device is reached.
    const svc = new ContainerService({ db } as unknown as ContainerServiceDeps);
    const add = (id: string, name: string, project: string, created: number) => db.prepare(
      `INSERT INTO device_containers VALUES (?, ?, ?, 'u', 'r', 'l', 'd', NULL, 'img', '{}', 'Stopped', NULL, ?, ?)`).run(id, name, project, created, created);
    add('c-bob', 'web', 'other', 1);
    add('c-alice', 'web', 'demo', 2);
    add('c-only-bob', 'db', 'other', 3);
    const alice = { projectId: 'demo', userId: 'a', isAdmin: false };
    const admin = { projectId: 'admin', userId: 'x', isAdmin: true };
    assert.equal((await svc.get(alice, 'web')).id, 'c-alice', 'not bob\'s older "web"');
    await assert.rejects(svc.get(alice, 'db'), (e: unknown) => isCloudletError(e, 'NotFound'), 'another project\'s name is not found');
    await assert.rejects(svc.get(alice, 'db', true), (e: unknown) => isCloudletError(e, 'NotFound'), 'all_projects is for admins');
    await assert.rejects(svc.get(alice, 'c-only-bob'), (e: unknown) => isCloudletError(e, 'Forbidden'));
    await assert.rejects(svc.get(admin, 'db'), (e: unknown) => isCloudletError(e, 'NotFound'));
    assert.equal((await svc.get(admin, 'db', true)).id, 'c-only-bob');
    await assert.rejects(svc.get(admin, 'web', true), (e: unknown) => isCloudletError(e, 'Conflict') && /use the id/.test(e.message));
    add('c-alice-2', 'web', 'demo', 4);
    await assert.rejects(svc.get(alice, 'web'), (e: unknown) => isCloudletError(e, 'Conflict'));
  });
});
