import { strict as assert } from 'assert';
import { formatApiDate, formatLeaseDate, parseLeaseDate } from '../../../sandbox/devices/leaseDates';
import { parseLeaseCreate, parseLeaseUpdate } from '../../../sandbox/devices/leaseRequest';
import { isCloudletError } from '../../../sandbox/common/errors';

const NOW = Date.UTC(2030, 0, 15, 10, 30, 20);

describe('lease dates and requests', () => {
  it('parses Blazar date forms and "now"', () => {
    assert.equal(parseLeaseDate('2030-01-15 11:00', 'x', NOW), Date.UTC(2030, 0, 15, 11, 0));
    assert.equal(parseLeaseDate('2030-01-15T11:00:30.500000', 'x', NOW), Date.UTC(2030, 0, 15, 11, 0, 30, 500));
    assert.equal(parseLeaseDate('2030-01-15 11:00:30Z', 'x', NOW), Date.UTC(2030, 0, 15, 11, 0, 30));
    assert.equal(parseLeaseDate('now', 'x', NOW), NOW);
    for (const bad of ['2030-02-30 10:00', '2030-01-15', 'tomorrow', '2030-01-15 25:00', 42]) {
      assert.throws(() => parseLeaseDate(bad, 'end_date', NOW), (e: unknown) => isCloudletError(e, 'BadInput'));
    }
  });
  it('formats as Blazar prints and as clients send', () => {
    assert.equal(formatLeaseDate(Date.UTC(2030, 0, 15, 11, 0, 5)), '2030-01-15T11:00:05.000000');
    assert.equal(formatApiDate(Date.UTC(2030, 0, 15, 11, 0, 5)), '2030-01-15 11:00');
  });
  const res = [{ resource_type: 'device', min: 1, max: 1, resource_properties: '["==", "$machine_name", "raspberrypi4-64"]' }];
  it('accepts a lease starting now with a default before-end', () => {
    const r = parseLeaseCreate({ name: 'a', start_date: 'now', end_date: '2030-01-15 12:00', reservations: res }, NOW);
    assert.equal(r.startAt, NOW);
    assert.equal(r.beforeEndAt, Date.UTC(2030, 0, 15, 11, 0));
    assert.equal(r.reservations[0].min, 1);
  });
  it('accepts a start in the current minute (Blazar compares minutes)', () => {
    assert.doesNotThrow(() => parseLeaseCreate({ name: 'a', start_date: '2030-01-15 10:30', end_date: '2030-01-15 12:00', reservations: res }, NOW));
  });
  it('refuses end before start, a past start, bad counts and other resource types with 400', () => {
    const cases: unknown[] = [
      { name: 'a', start_date: '2030-01-15 12:00', end_date: '2030-01-15 11:00', reservations: res },
      { name: 'a', start_date: '2030-01-15 10:00', end_date: '2030-01-15 11:00', reservations: res },
      { name: 'a', end_date: '2030-01-15 11:00', reservations: [{ resource_type: 'device', min: 2, max: 1 }] },
      { name: 'a', end_date: '2030-01-15 11:00', reservations: [{ resource_type: 'physical:host', min: 1, max: 1 }] },
      { name: 'a', end_date: '2030-01-15 11:00', reservations: [] },
      { end_date: '2030-01-15 11:00', reservations: res },
    ];
    for (const c of cases) assert.throws(() => parseLeaseCreate(c, NOW), (e: unknown) => isCloudletError(e, 'BadInput') && e.status === 400, JSON.stringify(c));
    assert.throws(() => parseLeaseCreate(cases[0], NOW), /must be later than start_date/);
  });
  it('update: "now" ends a running lease at once; start of a started lease is fixed', () => {
    const cur = { startAt: NOW - 60000, endAt: NOW + 60000, started: true };
    assert.equal(parseLeaseUpdate({ end_date: 'now' }, NOW, cur).endAt, NOW);
    assert.throws(() => parseLeaseUpdate({ start_date: '2030-01-15 11:00' }, NOW, cur), (e: unknown) => isCloudletError(e, 'BadInput'));
    assert.throws(() => parseLeaseUpdate({ end_date: '2030-01-15 09:00' }, NOW, cur), /in the past/);
  });
});
