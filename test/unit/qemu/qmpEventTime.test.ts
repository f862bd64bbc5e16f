/** QMP event stamps -> ms since the epoch (the bench's and the handoff report's STOP -> RESUME). */
import { strict as assert } from 'assert';
import { eventTimeMs } from '../../../sandbox/qemu/qmp';

describe('QMP event time', () => {
  it('turns QEMU\'s {seconds, microseconds} stamp into ms since the epoch', () => {
    assert.equal(eventTimeMs({ event: 'STOP', timestamp: { seconds: 1_796_000_000, microseconds: 123_456 } }), 1_796_000_000_123.456);
    // A RESUME 250.5 ms after a STOP, across a second boundary.
    const stop = eventTimeMs({ event: 'STOP', timestamp: { seconds: 100, microseconds: 900_000 } })!;
    const resume = eventTimeMs({ event: 'RESUME', timestamp: { seconds: 101, microseconds: 150_500 } })!;
    assert.equal(resume - stop, 250.5);
  });

  it('gives nothing for an event without a usable stamp', () => {
    assert.equal(eventTimeMs({ event: 'STOP' }), undefined);
    assert.equal(eventTimeMs({ event: 'STOP', timestamp: { seconds: Number.NaN, microseconds: 0 } }), undefined);
    assert.equal(eventTimeMs({ event: 'STOP', timestamp: { seconds: -1, microseconds: -1 } }), undefined);
  });
});
