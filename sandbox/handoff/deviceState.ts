/**
 * The source's device-state save for the paused round, in memory: QEMU migrates (x-ignore-shared,
 * so RAM stays in its shared file) into a unix socket this process serves, and the bytes are kept
 * as a Buffer for the final round. No file, no fsync: the state only has to reach the destination.
 * Completion is taken from the stream's end plus one query-migrate (no fixed polling interval).
 * A state is used only when QEMU said `completed` (ENVIRONMENT.md: a failed save can leave a
 * plausible-looking stream).
 */
import * as fs from 'fs';
import * as net from 'net';
import { CloudletError } from '../common/errors';
import type { QmpClient } from '../qemu/qmp';

/** Sets x-ignore-shared ahead (one QMP round trip less while paused); harmless to any later save. */
export async function prepareDeviceStateSave(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
}

export async function saveDeviceStateToMemory(qmp: QmpClient, sockPath: string, o: { prepared?: boolean; timeoutMs?: number } = {}): Promise<Buffer> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  if (!o.prepared) await prepareDeviceStateSave(qmp);
  fs.rmSync(sockPath, { force: true });
  const parts: Buffer[] = [];
  const server = net.createServer();
  const received = new Promise<void>((resolve, reject) => {
    server.once('connection', (s) => {
      server.close();
      s.on('data', (d: Buffer) => parts.push(d));
      s.once('end', () => resolve());
      s.on('error', reject);
    });
  });
  received.catch(() => undefined);
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sockPath, () => resolve()); });
  try {
    await qmp.execute('migrate', { uri: `unix:${sockPath}` });
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    void received.then(() => { ended = true; }, () => { ended = true; });
    for (;;) {
      // Wait for the stream to end (or a short while, to notice a failure that never ends it).
      await Promise.race([received.catch(() => undefined), new Promise((r) => setTimeout(r, ended ? 2 : 25))]);
      const m = await qmp.execute('query-migrate');
      if (m.status === 'completed' && ended) break;
      if (m.status === 'failed' || m.status === 'cancelled') {
        throw new CloudletError('Internal', `saving the device state ${m.status}${m['error-desc'] ? `: ${m['error-desc']}` : ' (QEMU gave no reason)'}`);
      }
      if (Date.now() > deadline) {
        await qmp.execute('migrate_cancel').catch(() => undefined);
        throw new CloudletError('Timeout', `saving the device state did not complete within ${timeoutMs} ms`);
      }
    }
    await received;
    return Buffer.concat(parts);
  } finally {
    server.close();
    fs.rmSync(sockPath, { force: true });
  }
}
