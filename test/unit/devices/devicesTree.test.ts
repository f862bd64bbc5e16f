import { strict as assert } from 'assert';
import { deviceNodes, leaseTimeLeft, reservationTimeline } from '../../../extension/state/devicesTree';
import type { Container, Device, DeviceAllocation, Lease } from '../../../sandbox/client/devices';

const NOW = Date.UTC(2030, 0, 1, 12, 0);
const iso = (ms: number) => new Date(ms).toISOString().replace('Z', '').replace(/\.\d+$/, '.000000');

const dev = (id: string, name: string, status: 'up' | 'down' = 'up'): Device => ({
  id, name, machine_name: 'raspberrypi4-64', model: 'Pi 4', device_type: 'container', device_driver: 'docker', properties: {},
  health: { status, checked_at: null }, reservable: status === 'up', created_at: '', updated_at: '',
});
const lease = (id: string, device: string, status: string, start: number, end: number, degraded = false): Lease => ({
  id, name: `l-${id}`, user_id: 'u', project_id: 'p', start_date: iso(start), end_date: iso(end), before_end_date: null, status,
  degraded, degraded_reason: degraded ? `device ${device} is unreachable` : null, created_at: '', updated_at: '', events: [],
  reservations: [{ id: `r-${id}`, lease_id: id, status: 'active', resource_type: 'device', resource_id: `r-${id}`, min: 1, max: 1,
    resource_properties: '', missing_resources: false, resources_changed: degraded, allocated_devices: [device], created_at: '', updated_at: '' }],
});

describe('Devices view and Reservations panel state', () => {
  it('says how much time a lease has left', () => {
    assert.equal(leaseTimeLeft({ status: 'ACTIVE', start_date: iso(NOW - 60_000), end_date: iso(NOW + 65 * 60_000) }, NOW), '1h 5m left');
    assert.equal(leaseTimeLeft({ status: 'PENDING', start_date: iso(NOW + 3 * 60_000), end_date: iso(NOW + 65 * 60_000) }, NOW), 'starts in 3m');
    assert.equal(leaseTimeLeft({ status: 'ACTIVE', start_date: iso(NOW - 60_000), end_date: iso(NOW + 20_000) }, NOW), '20s left');
    assert.equal(leaseTimeLeft({ status: 'TERMINATED', start_date: iso(NOW - 60_000), end_date: iso(NOW + 20_000) }, NOW), 'ended');
  });
  it('shows devices with state, my leases on them and their containers, with contextValues for menus', () => {
    const c = { uuid: 'c1', name: 'web', image: 'img', status: 'Running', lease_id: 'a', device_id: 'd1', status_reason: null } as unknown as Container;
    const nodes = deviceNodes({
      cloudlet: 'local', now: NOW, containers: [c],
      devices: [dev('d1', 'pi-1'), dev('d2', 'pi-2', 'down')],
      leases: [lease('a', 'd1', 'ACTIVE', NOW - 60_000, NOW + 3600_000), lease('b', 'd2', 'ACTIVE', NOW - 60_000, NOW + 600_000, true),
        lease('old', 'd1', 'TERMINATED', NOW - 7200_000, NOW - 3600_000)],
    });
    assert.deepEqual(nodes.map((n) => [n.label, n.contextValue]), [['pi-1', 'device up'], ['pi-2', 'device down']]);
    assert.match(nodes[0].description!, /reserved by you, 1h 0m left/);
    assert.deepEqual(nodes[0].children!.map((n) => [n.label, n.contextValue]), [['l-a', 'lease active']]);
    assert.deepEqual(nodes[0].children![0].children!.map((n) => [n.label, n.contextValue, n.command?.id]), [['web', 'container running', 'cloudlet.showContainerLogs']]);
    assert.equal(nodes[1].children![0].contextValue, 'lease active degraded');
    assert.match(nodes[1].children![0].tooltip!, /device d2 is unreachable/);
  });
  it('places lease windows on a time axis, clipped, other projects unnamed', () => {
    const alloc: DeviceAllocation[] = [{ resource_id: 'd1', name: 'pi-1', machine_name: 'raspberrypi4-64', reservations: [
      { id: 'r', lease_id: 'a', lease_name: 'mine', status: 'ACTIVE', mine: true, start_date: iso(NOW - 2 * 3600_000), end_date: iso(NOW + 3600_000) },
      { id: null, lease_id: null, lease_name: null, status: 'PENDING', mine: false, start_date: iso(NOW + 3600_000), end_date: iso(NOW + 2 * 3600_000) },
      { id: null, lease_id: null, lease_name: null, status: 'PENDING', mine: false, start_date: iso(NOW + 10 * 3600_000), end_date: iso(NOW + 11 * 3600_000) },
    ] }];
    const t = reservationTimeline(alloc, NOW, 4 * 3600_000, 3600_000);
    assert.equal(t.rows[0].bars.length, 2);
    assert.deepEqual(t.rows[0].bars.map((b) => [b.label, b.left, Math.round(b.width * 1000) / 1000]), [['mine', 0, 0.4], ['reserved', 0.4, 0.2]]);
    assert.equal(t.ticks.length, 6);
  });
});
