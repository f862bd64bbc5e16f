/** AgentClient.close() ends a wait for the agent at once (a base create whose VM failed must not linger until its deadline). */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isCloudletError } from '../../sandbox/common/errors';
import { AgentClient } from '../../sandbox/qemu/agentClient';

describe('AgentClient.close', () => {
  it('a ping waiting for an agent that never comes gives up at close, not at its deadline; a later ping waits again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-close-'));
    try {
      const a = new AgentClient(path.join(dir, 'agent.sock')); // nothing listens there
      const t0 = Date.now();
      const waiting = a.ping(600_000);
      setTimeout(() => a.close(), 300);
      await assert.rejects(waiting, (e) => isCloudletError(e, 'Cancelled'));
      assert.ok(Date.now() - t0 < 5000, `gave up after ${Date.now() - t0} ms`);
      await assert.rejects(a.ping(500), (e) => isCloudletError(e, 'Timeout'), 'a new wait after close runs to its own deadline');
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
});
