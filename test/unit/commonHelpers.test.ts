import { strict as assert } from 'assert';
import { envNumber } from '../../sandbox/common/env';
import { isTcpPort } from '../../sandbox/common/tcpPort';
import { formatBytes } from '../../sandbox/common/bytes';
import { failpointHit } from '../../sandbox/common/failpoint';

describe('sandbox/common helpers', () => {
  const NAME = 'CLOUDLET_TEST_ENV_NUMBER';
  afterEach(() => { delete process.env[NAME]; delete process.env.CLOUDLET_FAILPOINT; });

  it('envNumber: the value when it is a number at or above min, else the default', () => {
    assert.equal(envNumber(NAME, 7), 7);
    for (const [text, want] of [['250', 250], [' 3.5 ', 3.5], ['0', 0], ['', 7], ['  ', 7], ['abc', 7], ['Infinity', 7], ['-1', 7], ['0x10', 16]] as const) {
      process.env[NAME] = text;
      assert.equal(envNumber(NAME, 7, 0), want, `"${text}"`);
    }
    process.env[NAME] = '0';
    assert.equal(envNumber(NAME, 7, 1), 7, 'a zero timeout falls back');
    process.env[NAME] = '-5';
    assert.equal(envNumber(NAME, 7), -5, 'no min: negative numbers pass');
  });

  it('isTcpPort: integers 1..65535 only', () => {
    for (const p of [1, 80, 65535]) assert.ok(isTcpPort(p), String(p));
    for (const p of [0, -1, 65536, 80.5, NaN, '80', null, undefined]) assert.equal(isTcpPort(p), false, String(p));
  });

  it('formatBytes: binary units, one decimal below 100', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(128 * 1024 ** 2), '128 MiB');
    assert.equal(formatBytes(5 * 1024 ** 5), '5120 TiB');
    assert.equal(formatBytes(undefined), '');
    assert.equal(formatBytes(NaN), '');
  });

  it('failpointHit: only the named failpoint', () => {
    assert.equal(failpointHit('x'), false);
    process.env.CLOUDLET_FAILPOINT = 'other';
    assert.equal(failpointHit('x'), false);
    process.env.CLOUDLET_FAILPOINT = 'x';
    assert.equal(failpointHit('x'), true);
  });
});
