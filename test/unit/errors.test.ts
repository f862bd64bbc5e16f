import { strict as assert } from 'assert';
import { CloudletError, describeError, isCloudletError } from '../../sandbox/common/errors';
import { projectCache, projectRoot } from '../../sandbox/common/paths';
import * as fs from 'fs';
import * as path from 'path';

describe('common', () => {
  it('CloudletError maps codes to HTTP statuses and keeps the hint', () => {
    const e = new CloudletError('MissingTool', 'qemu-system-x86_64 not found', { hint: 'apt-get install qemu-system-x86' });
    assert.equal(e.status, 500);
    assert.ok(isCloudletError(e, 'MissingTool'));
    assert.ok(!isCloudletError(e, 'BadInput'));
    assert.match(describeError(e), /hint: apt-get install qemu-system-x86/);
    assert.equal(new CloudletError('Conflict', 'x').status, 409);
  });
  it('projectRoot finds the checkout', () => {
    assert.ok(fs.existsSync(path.join(projectRoot(), 'package.json')));
    assert.equal(projectCache('guest'), path.join(projectRoot(), '.cache', 'guest'));
  });
});
