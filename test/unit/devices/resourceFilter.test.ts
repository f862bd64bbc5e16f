import { strict as assert } from 'assert';
import { matchesFilter, parseResourceFilter } from '../../../sandbox/devices/resourceFilter';
import { isCloudletError } from '../../../sandbox/common/errors';

const pi4 = { name: 'pi-1', machine_name: 'raspberrypi4-64', model: 'Raspberry Pi 4', memory_mb: '4096', gpu: false };
const nano = { name: 'nano-1', machine_name: 'jetson-nano', model: 'Jetson Nano', memory_mb: 2048 };

describe('ResourceFilter', () => {
  it('empty filters match every device', () => {
    for (const f of ['', '[]', null, undefined]) assert.ok(matchesFilter(parseResourceFilter(f), pi4));
  });
  it('== and != on machine_name', () => {
    const eq = parseResourceFilter('["==", "$machine_name", "raspberrypi4-64"]');
    assert.ok(matchesFilter(eq, pi4));
    assert.ok(!matchesFilter(eq, nano));
    const ne = parseResourceFilter('["!=", "$machine_name", "raspberrypi4-64"]');
    assert.ok(!matchesFilter(ne, pi4));
    assert.ok(matchesFilter(ne, nano));
  });
  it('numeric comparisons treat numeric strings as numbers', () => {
    assert.ok(matchesFilter(parseResourceFilter('[">", "$memory_mb", 1024]'), pi4));
    assert.ok(matchesFilter(parseResourceFilter('[">=", "$memory_mb", "4096"]'), pi4));
    assert.ok(!matchesFilter(parseResourceFilter('["<", "$memory_mb", 4096]'), pi4));
    assert.ok(matchesFilter(parseResourceFilter('["<=", "$memory_mb", 2048]'), nano));
    // "900" < "1024" numerically even though it is larger as text
    assert.ok(matchesFilter(parseResourceFilter('["<", "$m", 1024]'), { m: '900' }));
  });
  it('and / or combine conditions', () => {
    const f = parseResourceFilter('["and", ["==", "$machine_name", "raspberrypi4-64"], [">", "$memory_mb", 1024]]');
    assert.ok(matchesFilter(f, pi4));
    assert.ok(!matchesFilter(f, nano));
    const g = parseResourceFilter(['or', ['==', '$name', 'nano-1'], ['==', '$model', 'Raspberry Pi 4']]);
    assert.ok(matchesFilter(g, pi4) && matchesFilter(g, nano));
  });
  it('a missing attribute never matches', () => {
    assert.ok(!matchesFilter(parseResourceFilter('["!=", "$location", "lab"]'), pi4));
    assert.ok(!matchesFilter(parseResourceFilter('["==", "$location", "lab"]'), pi4));
  });
  it('an unknown operator is refused with 400 naming it', () => {
    assert.throws(() => parseResourceFilter('["and", ["like", "$name", "pi%"]]'), (e: unknown) =>
      isCloudletError(e, 'BadInput') && e.status === 400 && /unknown operator 'like'/.test(e.message));
  });
  it('malformed filters are refused', () => {
    for (const bad of ['not json', '{"a":1}', '["=="]', '["==", "$a"]', '["and"]', '[1, 2, 3]', '["==", "$a", [1]]']) {
      assert.throws(() => parseResourceFilter(bad), (e: unknown) => isCloudletError(e, 'BadInput'), bad);
    }
  });
  it('a filter nested 5,000 levels deep is a BadInput, not a stack overflow (issue 11.7)', () => {
    const deep = '["and", '.repeat(5000) + '["==", "$name", "pi-1"]' + ']'.repeat(5000);
    for (const f of [deep, JSON.parse(deep)]) {
      assert.throws(() => parseResourceFilter(f), (e: unknown) => isCloudletError(e, 'BadInput') && /deeper than 16 levels/.test(e.message));
    }
    const ok = '["and", '.repeat(15) + '["==", "$name", "pi-1"]' + ']'.repeat(15);
    assert.ok(matchesFilter(parseResourceFilter(ok), pi4));
  });
});
