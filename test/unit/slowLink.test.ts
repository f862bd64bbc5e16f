/**
 * The late gate's round is skipped on a slow link only (handoffSender.slowLink): decided from round 0's
 * rate, first bytes written to the destination's answer; never without a measurement, for a small
 * round 0, or when turned off (the default).
 */
import { strict as assert } from 'assert';
import { slowLink, slowLinkMBps } from '../../sandbox/handoff/handoffSender';

describe('handoff: the late gate on a slow link (slowLink)', () => {
  const round0 = 29_347_980;
  it('25 Mbit/s (round 0 in ~9.7 s) is slow; loopback, even loaded (2-7 s), is not', () => {
    assert.equal(slowLink(round0, 9_685, 4), true);
    for (const ms of [2_000, 2_855, 4_268, 6_956]) assert.equal(slowLink(round0, ms, 4), false, `${ms} ms`);
  });
  it('no measurement (round 0 was not the launch round, or not answered yet) or the setting at 0: never skipped', () => {
    assert.equal(slowLink(round0, undefined, 4), false);
    assert.equal(slowLink(round0, 0, 4), false);
    assert.equal(slowLink(round0, 60_000, 0), false);
  });
  it('a small round 0 (the test guest: 133 KB, answered after the destination prepared) never judges the link', () => {
    assert.equal(slowLink(133_000, 2_100, 4), false);
    assert.equal(slowLink(7_999_999, 60_000, 4), false);
    assert.equal(slowLink(8_000_000, 60_000, 4), true);
  });
  it('CLOUDLET_HANDOFF_SLOW_LINK_MB_S sets the rate (default 0: off)', () => {
    const before = process.env.CLOUDLET_HANDOFF_SLOW_LINK_MB_S;
    try {
      delete process.env.CLOUDLET_HANDOFF_SLOW_LINK_MB_S;
      assert.equal(slowLinkMBps(), 0);
      assert.equal(slowLink(round0, 60_000), false);
      process.env.CLOUDLET_HANDOFF_SLOW_LINK_MB_S = '0';
      assert.equal(slowLink(round0, 60_000), false);
      process.env.CLOUDLET_HANDOFF_SLOW_LINK_MB_S = '20';
      assert.equal(slowLink(round0, 2_000), true);
    } finally {
      if (before === undefined) delete process.env.CLOUDLET_HANDOFF_SLOW_LINK_MB_S; else process.env.CLOUDLET_HANDOFF_SLOW_LINK_MB_S = before;
    }
  });
});
