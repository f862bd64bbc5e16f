import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createOverlay, OverlayReader, SegmentCompressor } from '../../sandbox/overlay';
import { CONTAINER_HEADER_SIZE, encodeContainerHeader } from '../../sandbox/overlay/format';
import { imageModule } from '../../sandbox/cloudlet/api/image';
import { isCloudletError } from '../../sandbox/client';
import { makePair } from './helpers/generatedImages';
import { startUnitDaemon, type UnitDaemon } from './helpers/inProcessDaemon';

describe('overlay head read by ranges (client and daemon share it)', function () {
  this.timeout(60_000);
  let tmp: string;
  let d: UnitDaemon;
  let overlay: string;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'overlay-head-'));
    const pair = makePair(path.join(tmp, 'pair'));
    const compressor = new SegmentCompressor(1);
    try {
      overlay = (await createOverlay({ baseId: pair.baseId, ...pair.base }, pair.launch, { outDir: path.join(tmp, 'out'), compressor })).path;
    } finally { await compressor.close(); }
    d = await startUnitDaemon([imageModule({ maxUploadBytes: 1 << 30 })]);
  });
  after(async () => { await d?.close(); fs.rmSync(tmp, { recursive: true, force: true }); });

  const upload = async (file: string) => {
    const c = await d.client('alice');
    const img = await c.createImage({ name: path.basename(file) });
    await c.uploadImageData(img.id, fs.readFileSync(file));
    return { c, id: img.id };
  };

  it('reads an overlay image\'s manifest as the file reader does', async () => {
    const { c, id } = await upload(overlay);
    const r = OverlayReader.open(overlay);
    try {
      const got = await c.readOverlayManifest(id);
      assert.equal(got.overlayId, r.overlayId);
      assert.deepEqual(got.manifest, r.manifest);
    } finally { r.close(); }
  });

  it('reads a manifest longer than the first range with a second one', async () => {
    const r = OverlayReader.open(overlay);
    const padded = Buffer.concat([r.manifestBytes, Buffer.alloc(200_000, 0x20)]);  // JSON allows trailing spaces
    const rest = fs.readFileSync(overlay).subarray(CONTAINER_HEADER_SIZE + r.manifestBytes.length);
    r.close();
    const big = path.join(tmp, 'big-manifest.overlay');
    fs.writeFileSync(big, Buffer.concat([encodeContainerHeader(padded), padded, rest]));
    const { c, id } = await upload(big);
    assert.equal((await c.readOverlayManifest(id)).manifest.baseId, JSON.parse(padded.toString()).baseId);
  });

  it('refuses what is not an overlay, by code', async () => {
    const junk = path.join(tmp, 'junk.bin');
    fs.writeFileSync(junk, Buffer.alloc(100, 7));
    const { c, id } = await upload(junk);
    await assert.rejects(c.readOverlayManifest(id), (e: unknown) => isCloudletError(e, 'BadInput') && /CLDOVRLY/.test(e.message));
  });
});
