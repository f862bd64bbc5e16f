import { strict as assert } from 'assert';
import { timelineWindow, choiceFilter, defaultLeaseName, deviceChoices, devicesViewNodes, leaseLabel, parseEnv, parseMinutes, parsePorts } from '../../../extension/state/devicesView';
import { deviceNodes, reservationTimeline } from '../../../extension/state/devicesTree';
import type { Device, Lease } from '../../../sandbox/client/devices';

const dev = (id: string, name: string, machine: string, health: 'up' | 'down' = 'up'): Device => ({
  id, name, machine_name: machine, model: null, device_type: 'container', device_driver: 'docker', properties: {}, health: { status: health, checked_at: null },
  reservable: true, created_at: '', updated_at: '',
});
const lease = (id: string, deviceId: string, status = 'ACTIVE'): Lease => ({
  id, name: `l-${id}`, user_id: 'u', project_id: 'p', start_date: '2030-01-01 10:00', end_date: '2030-01-01 12:00', before_end_date: null, status,
  degraded: false, degraded_reason: null, events: [], created_at: '', updated_at: '',
  reservations: [{ id: `r-${id}`, lease_id: id, status: 'active', resource_type: 'device', resource_id: '', min: 1, max: 1, resource_properties: '', missing_resources: false, resources_changed: false, allocated_devices: [deviceId], created_at: '', updated_at: '' }],
});
const devices = [dev('d1', 'pi-1', 'raspberrypi4-64'), dev('d2', 'pi-2', 'raspberrypi4-64', 'down'), dev('d3', 'nano-1', 'jetson-nano')];

describe('Devices view and device command state', () => {
  it('one cloudlet with devices: its devices are the roots; several: grouped; errors shown with Retry; no service left out', () => {
    const nodes = deviceNodes({ cloudlet: 'edge1', devices, leases: [], containers: [], now: Date.parse('2030-01-01T11:00:00Z') });
    assert.deepEqual(devicesViewNodes([{ cloudlet: 'edge1', nodes }, { cloudlet: 'plain', noService: true }]).map((n) => n.label), ['pi-1', 'pi-2', 'nano-1']);
    const two = devicesViewNodes([{ cloudlet: 'edge1', nodes }, { cloudlet: 'edge2', error: 'Cannot reach' }]);
    assert.deepEqual(two.map((n) => [n.label, n.contextValue]), [['edge1', 'devices-cloudlet'], ['edge2', 'devices-cloudlet unreachable']]);
    assert.equal(two[1].children![0].contextValue, 'message retry');
    // 17.9: a cloudlet with the service but no device says so, per cloudlet.
    const none = devicesViewNodes([{ cloudlet: 'edge1', nodes: [] }, { cloudlet: 'plain', noService: true }]);
    assert.deepEqual(none.map((n) => [n.label, n.description]), [['edge1', 'no devices enrolled']]);
    assert.equal(none[0].children![0].label, 'No devices enrolled');
    assert.deepEqual(devicesViewNodes([{ cloudlet: 'edge1', nodes }, { cloudlet: 'edge2', nodes: [] }]).map((n) => n.label), ['edge1', 'edge2']);
    // A device that gets a lease changes id, so VS Code shows it expanded rather than remembering it closed.
    const withLease = deviceNodes({ cloudlet: 'edge1', devices, leases: [lease('a', 'd1')], containers: [], now: Date.parse('2030-01-01T11:00:00Z') });
    const roots = devicesViewNodes([{ cloudlet: 'edge1', nodes: withLease }]);
    assert.notEqual(roots[0].id, devicesViewNodes([{ cloudlet: 'edge1', nodes }])[0].id);
    assert.equal(roots[0].collapsible, 'expanded');
    assert.equal(roots[1].id, devicesViewNodes([{ cloudlet: 'edge1', nodes }])[1].id);
  });

  it('Reserve Device offers any device of a machine type, then each device with its state', () => {
    const c = deviceChoices(devices, [lease('a', 'd1')]);
    assert.deepEqual(c.map((x) => x.label), ['Any jetson-nano', 'Any raspberrypi4-64', 'nano-1', 'pi-1', 'pi-2']);
    assert.match(c[1].description, /2 devices, 1 up/);
    assert.match(c.find((x) => x.label === 'pi-1')!.description, /reserved by you/);
    assert.match(c.find((x) => x.label === 'pi-2')!.description, /down/);
    assert.deepEqual(choiceFilter(c[1]), { machineName: 'raspberrypi4-64' });
    assert.deepEqual(choiceFilter(c[2]), { filter: ['==', '$name', 'nano-1'] });
    assert.equal(defaultLeaseName(c[2], new Date('2030-01-01T14:05:00Z')), 'nano-1-1405');
    assert.match(leaseLabel(lease('a', 'd1'), new Map([['d1', 'pi-1']])).description, /^ACTIVE · pi-1 · until 2030-01-01 12:00 UTC$/);
  });

  it('what the user types: lengths, ports, environment', () => {
    assert.equal(parseMinutes('30'), 30);
    assert.equal(parseMinutes('90m'), 90);
    assert.equal(parseMinutes('2h'), 120);
    assert.equal(parseMinutes('1h30m'), 90);
    for (const bad of ['', '0', '-5', 'soon', '1.5']) assert.equal(parseMinutes(bad), undefined, bad);
    assert.deepEqual(parsePorts(''), []);
    assert.deepEqual(parsePorts('8080, 9000/UDP'), ['8080/tcp', '9000/udp']);
    assert.equal(parsePorts('80000'), undefined);
    assert.equal(parsePorts('http'), undefined);
    assert.deepEqual(parseEnv('A=1 B=x=y'), { A: '1', B: 'x=y' });
    assert.deepEqual(parseEnv(''), {});
    assert.equal(parseEnv('NOEQ'), undefined);
  });

  it('the Reservations axis reaches the last window ahead: short leases get a short axis with finer ticks', () => {
    const now = Date.parse('2030-01-01T10:00:00Z');
    const alloc = (end: string) => [{ resource_id: 'd1', name: 'pi-1', machine_name: 'm', reservations: [{ id: 'r', lease_id: 'l', lease_name: 'x', status: 'ACTIVE', mine: true, start_date: '2030-01-01 09:55', end_date: end }] }];
    assert.deepEqual(timelineWindow([], now), { spanMs: 3600_000, pastMs: 900_000, tickMs: 900_000 });
    assert.deepEqual(timelineWindow(alloc('2030-01-01 10:10'), now), { spanMs: 3600_000, pastMs: 900_000, tickMs: 900_000 });
    assert.equal(timelineWindow(alloc('2030-01-01 15:00'), now).tickMs, 3600_000);
    assert.equal(timelineWindow(alloc('2030-01-01 15:00'), now).spanMs, 5.5 * 3600_000);
    assert.deepEqual(timelineWindow(alloc('2030-01-05 10:00'), now), { spanMs: 24 * 3600_000, pastMs: 6 * 3600_000, tickMs: 3 * 3600_000 });
    const t = reservationTimeline(alloc('2030-01-01 10:10'), now, 3600_000, 900_000, 900_000);
    assert.equal(t.ticks.length, 6);
    assert.ok(t.rows[0].bars[0].width > 0.1);
  });
});
