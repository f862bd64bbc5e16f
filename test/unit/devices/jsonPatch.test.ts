import { strict as assert } from 'assert';
import { applyJsonPatch } from '../../../sandbox/devices/jsonPatch';
import { isCloudletError } from '../../../sandbox/common/errors';

describe('JSON-Patch', () => {
  const doc = { authorized_projects: ['p1'], properties: { machine_name: 'raspberrypi4-64', a: 1 } };
  it('adds, replaces, removes and tests without touching the input', () => {
    const out = applyJsonPatch(doc, [
      { op: 'add', path: '/authorized_projects/-', value: 'p2' },
      { op: 'replace', path: '/properties/a', value: 2 },
      { op: 'add', path: '/properties/b', value: 'x' },
      { op: 'remove', path: '/authorized_projects/0' },
      { op: 'test', path: '/properties/b', value: 'x' },
    ]);
    assert.deepEqual(out, { authorized_projects: ['p2'], properties: { machine_name: 'raspberrypi4-64', a: 2, b: 'x' } });
    assert.deepEqual(doc.authorized_projects, ['p1']);
  });
  it('refuses bad operations', () => {
    assert.throws(() => applyJsonPatch(doc, [{ op: 'remove', path: '/properties/zz' }]), (e: unknown) => isCloudletError(e, 'BadInput'));
    assert.throws(() => applyJsonPatch(doc, [{ op: 'move', path: '/a' }]), /unsupported JSON-Patch op 'move'/);
    assert.throws(() => applyJsonPatch(doc, { op: 'add' }), (e: unknown) => isCloudletError(e, 'BadInput'));
    assert.throws(() => applyJsonPatch(doc, [{ op: 'test', path: '/properties/a', value: 9 }]), (e: unknown) => isCloudletError(e, 'Conflict'));
  });
});
