/**
 * Base images follow the base store: every base the VM layer holds is advertised as one public
 * image (cloudlet_type cloudlet_base_disk), also when it came from outside the API (`cloudlet base
 * import|create|delete` run on the daemon's data folder). The store stays the owner of bases, the
 * image store of image rows; this only reconciles the second with the first, at start and whenever
 * the bases folder changes (VmBackend.watchBases).
 */
import type { ImageStore, ImageRow } from './imageStore';
import type { VmBackend } from './vmBackend';

/** Owner of the images the daemon advertises for its bases (uploaded ones belong to a project). */
export const ADVERTISED_OWNER = 'admin';

/** The public image of a base this cloudlet holds (active: its data is the base store's bundle). */
export function advertiseBase(images: ImageStore, b: { baseId: string; name: string; ramBytes: number }): ImageRow {
  const img = images.create(ADVERTISED_OWNER, { name: b.name, visibility: 'public', disk_format: 'raw', container_format: 'bare', is_cloudlet: 'True',
    cloudlet_type: 'cloudlet_base_disk', base_sha256_uuid: b.baseId, min_ram: Math.ceil(b.ramBytes / 1048576) });
  images.setStatus(img.id, 'active');
  return images.getRow(img.id)!;
}

export interface BaseImageChange { image: ImageRow; change: 'active' | 'deleted' }

/**
 * Advertises bases that have no image yet and drops the advertised images of bases gone from the
 * store. While a base upload through Glance is in flight, new bases wait (the upload's own image
 * will name its base): no second image for one base. Returns what changed.
 */
export function syncBaseImages(images: ImageStore, backend: VmBackend): BaseImageChange[] {
  const changes: BaseImageChange[] = [];
  const held = backend.bases();
  const heldIds = new Set(held.map((b) => b.baseId));
  const baseRows = images.list(undefined).filter((r) => r.properties.cloudlet_type === 'cloudlet_base_disk');
  const uploading = baseRows.some((r) => r.status === 'saving' || r.status === 'importing');
  if (!uploading) {
    for (const b of held) {
      if (images.basesWithId(b.baseId).length) continue;
      changes.push({ image: advertiseBase(images, b), change: 'active' });
    }
  }
  for (const r of baseRows) {
    const baseId = r.properties.base_sha256_uuid;
    if (r.owner !== ADVERTISED_OWNER || r.status !== 'active' || typeof baseId !== 'string' || heldIds.has(baseId) || backend.hasBase(baseId)) continue;
    images.delete(r.id);
    changes.push({ image: r, change: 'deleted' });
  }
  return changes;
}
