import { strict as assert } from 'assert';
import { parseProgressLine } from '../../../extension/state/cliOutput';
import { baseMatches, yamlBase } from '../../../extension/state/cloudletYaml';
import type { ImageInfo } from '../../../extension/api';

describe('extension first-run helpers', () => {
  it('reads the progress lines of cloudlet base create, and nothing else', () => {
    assert.deepEqual(parseProgressLine('  boot: waiting for the guest agent'), { phase: 'boot', message: 'waiting for the guest agent' });
    assert.deepEqual(parseProgressLine('  save ram.img 42%'), { phase: 'save', message: 'ram.img', pct: 42 });
    assert.equal(parseProgressLine('cloudlet: the guest did not print "x" within 300 s. Last console lines:'), undefined);
    assert.equal(parseProgressLine('0123456789abcdef'), undefined);
  });

  it('finds the base line of a cloudlet.yaml (quoted, commented) and matches local bases by name or ID prefix', () => {
    const text = '# a comment\nname: app\nbase: "debian-min"   # the README\'s name\ninstall: []\n';
    const b = yamlBase(text)!;
    assert.equal(b.value, 'debian-min');
    assert.equal(b.line, 2);
    assert.equal(text.split('\n')[2].slice(b.start, b.end), '"debian-min"');
    assert.equal(yamlBase('name: x\n'), undefined);
    assert.equal(yamlBase('base: test-guest\r\n')!.value, 'test-guest');
    const img: ImageInfo = { id: 'a1b2c3d4-0000', name: 'test-guest', status: 'active', baseId: 'f00dfeed1234abcd' };
    assert.ok(baseMatches(img, 'test-guest'));
    assert.ok(baseMatches(img, 'f00dfeed'));
    assert.ok(!baseMatches(img, 'f00'), 'a prefix needs 6 characters or more');
    assert.ok(!baseMatches(img, 'debian-min'));
  });
});
