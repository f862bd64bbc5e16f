/** SHA-256 digests in OCI form (`sha256:<64 hex>`). */
import * as crypto from 'crypto';
import { CloudletError } from '../common/errors';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Refuses anything that is not a well-formed sha256 digest (it ends up in paths and URLs). */
export function checkDigest(s: string, what = 'digest'): string {
  if (!isDigest(s)) throw new CloudletError('BadInput', `${what} is not a sha256 digest: ${JSON.stringify(s).slice(0, 100)}`);
  return s;
}

export function sha256Digest(data: Buffer | Uint8Array): string {
  return 'sha256:' + crypto.createHash('sha256').update(data).digest('hex');
}

export function digestHex(digest: string): string {
  return checkDigest(digest).slice('sha256:'.length);
}
