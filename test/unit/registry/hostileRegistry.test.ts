/**
 * A hostile registry must not make the client hold unbounded bytes: an overlay artifact's config (the
 * overlay manifest, held whole in memory) over the format's limit is refused before its download, and
 * answers read whole (manifests, error bodies) are cut off past their cap. The registry here is a
 * plain HTTP server on loopback standing in for a hostile one (pure client logic under test).
 */
import { strict as assert } from 'assert';
import * as http from 'http';
import type { AddressInfo } from 'net';
import { readOverlayArtifact } from '../../../sandbox/registry/overlayArtifact';
import { OCI_MANIFEST, OVERLAY_ARTIFACT_TYPE, OVERLAY_CONFIG } from '../../../sandbox/registry/mediaTypes';
import { LIMITS } from '../../../sandbox/overlay/formatConstants';
import { RegistryClient } from '../../../sandbox/registry/registryClient';
import { isCloudletError } from '../../../sandbox/common/errors';

const D = 'sha256:' + 'a'.repeat(64);

function artifact(configSize: number): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: OVERLAY_ARTIFACT_TYPE,
    config: { mediaType: OVERLAY_CONFIG, digest: D, size: configSize }, layers: [],
  }));
}

describe('a hostile registry', () => {
  it('an overlay artifact whose config is over the manifest limit is refused before any byte of it is fetched', () => {
    assert.throws(() => readOverlayArtifact(artifact(LIMITS.manifestBytes + 1), OCI_MANIFEST, 'r/x:1'),
      (e: unknown) => isCloudletError(e, 'Corrupt') && /overlay manifest is \d+ bytes/.test((e as Error).message));
    assert.throws(() => readOverlayArtifact(artifact(2 ** 40), OCI_MANIFEST, 'r/x:1'), (e: unknown) => isCloudletError(e, 'Corrupt'));
    assert.equal(readOverlayArtifact(artifact(1000), OCI_MANIFEST, 'r/x:1').configSize, 1000);
  });

  it('a manifest answer that never ends is cut off past the cap (BadInput), not read into memory', async () => {
    let sent = 0;
    const server = http.createServer((req, res) => {
      if (req.url === '/v2/') { res.writeHead(200).end('{}'); return; }
      res.writeHead(200, { 'content-type': OCI_MANIFEST });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      // 1 MiB at a time for up to 256 MiB, as long as the client reads.
      const more = () => { while (sent < 256 << 20) { sent += chunk.length; if (!res.write(chunk)) { res.once('drain', more); return; } } res.end(); };
      more();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = new RegistryClient(`127.0.0.1:${(server.address() as AddressInfo).port}`, { plainHttp: true, credentials: null, retry: { attempts: 1 } });
    try {
      await assert.rejects(client.getManifest('r/x', 'v1'), (e: unknown) => isCloudletError(e, 'BadInput') && /larger than \d+ bytes; refused/.test((e as Error).message));
      // The client stopped reading: the server got nowhere near the 256 MiB it would have sent.
      assert.ok(sent < 64 << 20, `the server sent ${sent} bytes before the client gave up`);
    } finally {
      await client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
