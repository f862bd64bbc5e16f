import { strict as assert } from 'assert';
import Database from '../../../sandbox/common/sqlite';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { migrateDevices } from '../../../sandbox/devices/schema';
import { DeviceInventory } from '../../../sandbox/devices/deviceInventory';
import { LeaseScheduler } from '../../../sandbox/devices/leaseScheduler';
import { LeaseStore, leaseToBlazar } from '../../../sandbox/devices/leaseStore';
import { LeaseClock } from '../../../sandbox/devices/leaseClock';
import { LeaseLifecycle } from '../../../sandbox/devices/leaseLifecycle';
import { parseLeaseCreate } from '../../../sandbox/devices/leaseRequest';
import { isCloudletError } from '../../../sandbox/common/errors';

const T0 = Date.UTC(2030, 0, 1, 12, 0);
const MIN = 60_000;

function setup(dbFile = ':memory:') {
  const db = new Database(dbFile);
  migrateDevices(db);
  let now = T0;
  const clock = () => now;
  const inv = new DeviceInventory(db, clock);
  const sched = new LeaseScheduler(db, inv, { now: clock });
  return { db, inv, sched, store: new LeaseStore(db), setNow: (t: number) => { now = t; }, clock };
}

function enrollThree(inv: DeviceInventory) {
  return ['pi-1', 'pi-2', 'nano-1'].map((name) => inv.enroll({
    name, machine_name: name.startsWith('pi') ? 'raspberrypi4-64' : 'jetson-nano', model: 'x',
    engine_endpoint: `unix:///tmp/${name}.sock`, properties: { memory_mb: name === 'pi-2' ? 8192 : 2048 },
  }, 'admin-project'));
}

function req(name: string, startMin: number, endMin: number, filter = '["==", "$machine_name", "raspberrypi4-64"]', min = 1, max = 1) {
  return parseLeaseCreate({
    name, start_date: new Date(T0 + startMin * MIN).toISOString(), end_date: new Date(T0 + endMin * MIN).toISOString(),
    reservations: [{ resource_type: 'device', min, max, resource_properties: filter }],
  }, T0);
}

const who = { projectId: 'p1', userId: 'u1' };

describe('LeaseScheduler', () => {
  it('gives matching free devices and refuses overlaps with 409 and the reason', () => {
    const { inv, sched, store } = setup();
    enrollThree(inv);
    const a = sched.create(req('a', 0, 10), who);
    const b = sched.create(req('b', 5, 15), who);
    const da = store.detail(a).reservations[0].deviceIds, db_ = store.detail(b).reservations[0].deviceIds;
    assert.equal(da.length, 1);
    assert.notDeepEqual(da, db_);
    assert.throws(() => sched.create(req('c', 9, 12), who), (e: unknown) =>
      isCloudletError(e, 'Conflict') && /Not enough devices available/.test(e.message) && /pi-1 is reserved until/.test(e.message));
    // back-to-back is fine: [10, 20) does not overlap [0, 10)
    assert.doesNotThrow(() => sched.create(req('d', 10, 20), who));
  });
  it('applies the filter on properties and min/max', () => {
    const { inv, sched, store } = setup();
    enrollThree(inv);
    const big = sched.create(req('big', 0, 10, '[">", "$memory_mb", 4096]'), who);
    assert.equal(inv.get(store.detail(big).reservations[0].deviceIds[0]).name, 'pi-2');
    const all = sched.create(req('all', 20, 30, '', 2, 3), who);
    assert.equal(store.detail(all).reservations[0].deviceIds.length, 3);
    assert.throws(() => sched.create(req('none', 0, 10, '["==", "$machine_name", "raspberrypi5"]'), who), /no enrolled device/);
  });
  it('respects authorized projects', () => {
    const { inv, sched } = setup();
    inv.enroll({ name: 'private', machine_name: 'raspberrypi4-64', engine_endpoint: 'unix:///tmp/x.sock', authorized_projects: ['p2'] }, 'admin');
    assert.throws(() => sched.create(req('x', 0, 10), who), (e: unknown) => isCloudletError(e, 'Conflict'));
    assert.doesNotThrow(() => sched.create(req('x', 0, 10), { projectId: 'p2', userId: 'u2' }));
  });
  it('extends only while the devices stay free', () => {
    const { inv, sched, store } = setup();
    inv.enroll({ name: 'only', machine_name: 'raspberrypi4-64', engine_endpoint: 'unix:///tmp/o.sock' }, 'admin');
    const a = sched.create(req('a', 0, 10), who);
    sched.create(req('b', 20, 30), who);
    sched.update(store.findLease(a)!, { endAt: T0 + 20 * MIN });
    assert.equal(store.findLease(a)!.end_at, T0 + 20 * MIN);
    assert.throws(() => sched.update(store.findLease(a)!, { endAt: T0 + 21 * MIN }), (e: unknown) =>
      isCloudletError(e, 'Conflict') && /only is reserved by another lease/.test(e.message));
    const end = store.detail(a).events.find((e) => e.event_type === 'end_lease')!;
    assert.equal(end.time, T0 + 20 * MIN);
  });
  it('two connections to one database never double-book (BEGIN IMMEDIATE)', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sched-')), 'db.sqlite');
    const one = setup(file);
    one.db.pragma('journal_mode = WAL');
    enrollThree(one.inv);
    const two = setup(file);
    two.db.pragma('busy_timeout = 2000');
    const results: string[] = [];
    for (let i = 0; i < 10; i++) {
      const s = i % 2 ? one.sched : two.sched;
      try { s.create(req(`l${i}`, i, i + 5), who); results.push('ok'); } catch (e) { results.push(isCloudletError(e, 'Conflict') ? '409' : String(e)); }
    }
    const rows = one.db.prepare('SELECT device_id, start_at, end_at FROM device_allocations').all() as { device_id: string; start_at: number; end_at: number }[];
    for (const a of rows) for (const b of rows) {
      if (a !== b && a.device_id === b.device_id) assert.ok(a.end_at <= b.start_at || b.end_at <= a.start_at, 'overlap');
    }
    assert.ok(results.every((r) => r === 'ok' || r === '409'), results.join());
  });
});

describe('LeaseClock and LeaseLifecycle', () => {
  function harness(dbFile = ':memory:') {
    const s = setup(dbFile);
    const removed: string[] = [];
    const life = new LeaseLifecycle(s.db, { removeLeaseContainers: async (id) => { removed.push(id); } }, () => {}, s.clock);
    const clock = new LeaseClock({ db: s.db, handle: (e) => life.handle(e), now: s.clock, maxSleepMs: 20 });
    return { ...s, removed, life, clock };
  }
  it('moves PENDING -> ACTIVE -> TERMINATED as time passes, events UNDONE -> DONE', async () => {
    const h = harness();
    enrollThree(h.inv);
    const id = h.sched.create(req('a', 1, 3), who);
    await h.clock.start();
    assert.equal(h.store.findLease(id)!.status, 'PENDING');
    h.setNow(T0 + MIN);
    await h.clock.tick();
    assert.equal(h.store.findLease(id)!.status, 'ACTIVE');
    const d = h.store.detail(id);
    assert.equal(d.reservations[0].status, 'active');
    assert.deepEqual(d.events.map((e) => `${e.event_type}:${e.status}`), ['start_lease:DONE', 'before_end_lease:DONE', 'end_lease:UNDONE']);
    h.setNow(T0 + 3 * MIN);
    await h.clock.tick();
    assert.equal(h.store.findLease(id)!.status, 'TERMINATED');
    assert.deepEqual(h.removed, [id]);
    const body = leaseToBlazar(h.store.detail(id));
    assert.equal((body.reservations as { status: string }[])[0].status, 'deleted');
    assert.ok((body.events as { status: string }[]).every((e) => e.status === 'DONE'));
    await h.clock.stop();
  });
  it('after a restart, a lease that ended meanwhile ends at once and a running one goes on', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'clock-')), 'db.sqlite');
    const first = harness(file);
    enrollThree(first.inv);
    const short = first.sched.create(req('short', 0, 2), who);
    const long = first.sched.create(req('long', 0, 10), who);
    await first.clock.start();
    assert.equal(first.store.findLease(short)!.status, 'ACTIVE');
    // simulate a crash in the middle of an event
    first.db.prepare(`UPDATE device_lease_events SET status = 'IN_PROGRESS' WHERE lease_id = ? AND event_type = 'before_end_lease'`).run(long);
    await first.clock.stop();
    first.db.close();

    const second = harness(file);
    second.setNow(T0 + 5 * MIN);
    await second.clock.start();
    assert.equal(second.store.findLease(short)!.status, 'TERMINATED');
    assert.deepEqual(second.removed, [short]);
    assert.equal(second.store.findLease(long)!.status, 'ACTIVE');
    second.setNow(T0 + 10 * MIN);
    await second.clock.tick();
    assert.equal(second.store.findLease(long)!.status, 'TERMINATED');
    await second.clock.stop();
  });
  it('fires on a real timer', async () => {
    const h = harness();
    enrollThree(h.inv);
    const id = h.sched.create(req('a', 0, 1), who);
    await h.clock.start();
    assert.equal(h.store.findLease(id)!.status, 'ACTIVE');
    h.setNow(T0 + MIN);
    for (let i = 0; i < 100 && h.store.findLease(id)!.status !== 'TERMINATED'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(h.store.findLease(id)!.status, 'TERMINATED');
    await h.clock.stop();
  });
});
