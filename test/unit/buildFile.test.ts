import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { loadBuildFile, parseBuildFile } from '../../sandbox/build/buildFile';
import { projectRoot } from '../../sandbox/common/paths';

describe('cloudlet.yaml', () => {
  let ws: string;
  before(() => {
    ws = fs.mkdtempSync(path.join(os.tmpdir(), 'buildfile-'));
    fs.mkdirSync(path.join(ws, 'app'));
    fs.writeFileSync(path.join(ws, 'app', 'run.sh'), 'echo hi\n');
  });
  after(() => fs.rmSync(ws, { recursive: true, force: true }));
  const file = () => path.join(ws, 'cloudlet.yaml');
  const refused = (text: string, re: RegExp) => assert.throws(() => parseBuildFile(text, file()), (e: unknown) => {
    assert.ok(isCloudletError(e, 'BadInput'), String(e));
    assert.match(e.message, re);
    return true;
  });

  it('the sample back-end validates, with defaults filled in', () => {
    const s = loadBuildFile(path.join(projectRoot(), 'test/fixtures/sample-backend'));
    assert.equal(s.base, 'test-guest');
    assert.deepEqual(s.ports, [80]);
    assert.deepEqual(s.ready?.http, { port: 80, path: '/index.html', status: 200 });
    assert.equal(s.copy[0].to, '/srv/www');
    assert.equal(s.workspace, path.join(projectRoot(), 'test/fixtures/sample-backend'));
  });

  it('errors point at the line and column of the offending value', () => {
    const text = ['base: b', 'copy:', '  - from: app', '    to: relative/path', 'ports: [80, "x"]', 'ready:', '  http: { port: 80 }', '  timeout: -1', 'bogus: 1', ''].join('\n');
    refused(text, /cloudlet\.yaml:4:9: copy\.0\.to: must be an absolute path in the guest/);
    refused(text, /cloudlet\.yaml:5:13: ports\.1: must be an integer/);
    refused(text, /cloudlet\.yaml:8:12: ready\.timeout: must be > 0/);
    refused(text, /cloudlet\.yaml:9:1: top level: unknown key "bogus"/);
  });

  it('missing base, YAML syntax errors and cross-field mistakes each get their own message', () => {
    refused('name: x\n', /cloudlet\.yaml:1:1: the file: missing required key "base"/);
    refused('base: [unclosed\n', /is not valid YAML:\n.*cloudlet\.yaml:\d+:\d+:/);
    refused('base: b\ncopy:\n  - from: nothere\n    to: /x\n', /cloudlet\.yaml:3:11: copy\.0\.from "nothere" does not exist/);
    refused('base: b\ncopy:\n  - from: ../../etc\n    to: /x\n', /is outside the workspace/);
    refused('base: b\nports: [80]\nready:\n  http: { port: 8080 }\n', /cloudlet\.yaml:4:17: ready\.http\.port 8080 is not in ports/);
    refused('', /the file is empty/);
  });

  it('discard: both on by default, each switch on its own, anything else refused at its line', () => {
    assert.deepEqual(parseBuildFile('base: b\n', file()).discard, { memory: true, disk: true });
    assert.deepEqual(parseBuildFile('base: b\ndiscard: { memory: false }\n', file()).discard, { memory: false, disk: true });
    assert.deepEqual(parseBuildFile('base: b\ndiscard:\n  disk: false\n  memory: false\n', file()).discard, { memory: false, disk: false });
    refused('base: b\ndiscard: { memory: "yes" }\n', /cloudlet\.yaml:2:20: discard\.memory: must be a boolean/);
    refused('base: b\ndiscard:\n  swap: true\n', /cloudlet\.yaml:3:3: discard: unknown key "swap"/);
    refused('base: b\ndiscard: true\n', /cloudlet\.yaml:2:10: discard: must be an object/);
  });
});
