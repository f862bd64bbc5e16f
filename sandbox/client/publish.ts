/**
 * Publishing an overlay image of a daemon to an OCI registry, as a job of that daemon
 * (service "cloudlet-sandbox", POST /overlays/{imageId}/publish; sandbox/cloudlet/api/devsandbox.ts).
 * Follow the job with `client.watchJob`; when it is DONE the image carries cloudlet_published_ref.
 * Registry credentials travel in the request body to the daemon only; the client's call log holds
 * method, URL and status, never a body.
 */
import type { CloudletClient } from './client';
import { CloudletError } from '../common/errors';

export const SANDBOX_SERVICE_TYPE = 'cloudlet-sandbox';

export interface PublishRequest {
  /** HOST[:PORT]/REPOSITORY:TAG (oci:// prefix allowed). */
  reference: string;
  username?: string;
  password?: string;
  /** PEM of a CA to trust for the registry's TLS. */
  ca?: string;
}

/** What the publish job returns as its result. */
export interface PublishJobResult {
  image_id: string;
  reference: string;
  digest_reference: string;
  manifest_digest: string;
  overlay_id: string;
  segments: { total: number; uploaded: number; skipped: number; mounted: number };
  segment_bytes: { total: number; uploaded: number; skipped: number; mounted: number };
  bytes_sent: number;
  retries: number;
  seconds: number;
}

/** Starts the publish job; returns its id. */
export async function startPublish(client: CloudletClient, imageId: string, req: PublishRequest): Promise<{ jobId: string }> {
  if (!client.hasService(SANDBOX_SERVICE_TYPE)) throw new CloudletError('BadInput', `this daemon cannot publish overlays (no ${SANDBOX_SERVICE_TYPE} service in its catalog)`);
  const publish: Record<string, string> = { reference: req.reference };
  if (req.username !== undefined && req.password !== undefined) { publish.username = req.username; publish.password = req.password; }
  if (req.ca) publish.ca = req.ca;
  const r = await client.call<{ job_id: string }>(SANDBOX_SERVICE_TYPE, 'POST', `/overlays/${encodeURIComponent(imageId)}/publish`, { publish });
  return { jobId: r.job_id };
}
