/**
 * Which 4 KiB chunks of the VM's disk were written since the handoff began, from QEMU's own block
 * dirty bitmap: a bitmap on the disk's node (every guest write, write-zeroes and discard sets its
 * bits), read through an NBD export served on a unix socket in the VM's folder (NbdBitmapClient;
 * QMP gives only the count). The paused disk scan then reads the written chunks,
 * not the whole qcow2 layer (the Debian guest's journal changes its 230 MB layer all the time:
 * 206 ms of the pause read and compared it whole). The bitmap is never cleared: it holds everything
 * written since it was added, and the first scan of the layer, made after that, covers what was
 * written before. stop() takes the export, the NBD server and the bitmap away again.
 */
import * as fs from 'fs';
import type { QmpClient } from '../qemu/qmp';
import { NbdBitmapClient, type Extent } from '../qemu/nbdClient';
import { CloudletError, describeError } from '../common/errors';
import { CHUNK_SIZE } from '../overlay/format';

const DEVICE = 'disk0';
const BITMAP = 'cloudlet-handoff';
const EXPORT = 'cloudlet-handoff';
const NULL_NODE = 'cloudlet-handoff-null';

export class DiskDirtyLog {
  private constructor(private readonly qmp: QmpClient, private readonly node: string, private readonly socket: string, private client?: NbdBitmapClient) {}

  /** Adds the bitmap and the export, and connects (all before the first scan of the layer). */
  static async start(qmp: QmpClient, socket: string): Promise<DiskDirtyLog> {
    const blocks = await qmp.execute('query-block');
    const disk = blocks.find((b) => b.device === DEVICE)?.inserted;
    const node = disk?.['node-name'], size = disk?.image?.['virtual-size'];
    if (!node || !size) throw new CloudletError('Internal', `QEMU has no block device ${DEVICE} with a node name and size`);
    const log = new DiskDirtyLog(qmp, node, socket);
    await log.stop(); // what an earlier handoff of this VM may have left (its daemon killed midway)
    try {
      await qmp.execute('block-dirty-bitmap-add', { node, name: BITMAP, granularity: CHUNK_SIZE });
      fs.rmSync(socket, { force: true });
      await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socket } } });
      // QEMU 7.2 exports an enabled bitmap only from a node that is not writable (a writable export
      // would conflict with the guest's device and stop QEMU from inactivating the disk when its
      // migration completes), so the export is a read-only null node of the disk's size carrying the
      // disk node's bitmap: only its block status is asked for, never its data.
      await qmp.execute('blockdev-add', { driver: 'null-co', 'node-name': NULL_NODE, size, 'read-only': true });
      await qmp.execute('block-export-add', { type: 'nbd', id: EXPORT, 'node-name': NULL_NODE, name: EXPORT, writable: false, bitmaps: [{ node, name: BITMAP }] });
      log.client = await NbdBitmapClient.connect(socket, EXPORT, BITMAP);
    } catch (e) {
      await log.stop();
      throw e;
    }
    return log;
  }

  /** Every chunk the guest wrote since start(), ascending. */
  async writtenChunks(): Promise<number[]> {
    if (!this.client) throw new CloudletError('Internal', 'the disk dirty log is stopped');
    const out: number[] = [];
    for (const e of await this.client.dirtyExtents()) for (let c = Math.floor(e.offset / CHUNK_SIZE); c * CHUNK_SIZE < e.offset + e.length; c++) out.push(c);
    return out;
  }

  /** Removes the export, the NBD server and the bitmap (each best effort; the VM is unaffected). */
  async stop(): Promise<void> {
    this.client?.close();
    this.client = undefined;
    const quiet = (p: Promise<unknown>) => p.catch((e) => describeError(e));
    await quiet(this.qmp.execute('block-export-del', { id: EXPORT, mode: 'hard' }));
    await quiet(this.qmp.execute('nbd-server-stop'));
    for (let i = 0; i < 40; i++) {
      const r = await quiet(this.qmp.execute('blockdev-del', { 'node-name': NULL_NODE }));
      if (typeof r !== 'string' || !/in use|busy|permission/i.test(r)) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    // The export lets go of the bitmap once it is really gone (block-export-del returns before that).
    for (let i = 0; i < 40; i++) {
      const r = await quiet(this.qmp.execute('block-dirty-bitmap-remove', { node: this.node, name: BITMAP }));
      if (typeof r !== 'string' || !/busy|in use/i.test(r)) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    fs.rmSync(this.socket, { force: true });
  }
}

export type { Extent };
