/**
 * Uploads one blob into a repository, skipping it when the registry already has it:
 *   1. HEAD: present -> skipped.
 *   2. Cross-repo mount (POST ?mount=&from=) for each repository known to hold it -> mounted.
 *   3. Upload session: monolithic (one PUT) up to `chunkSize`, chunked PATCHes with Content-Range
 *      above it. After a connection failure or a 5xx the session is resumed from the Range the
 *      registry reports (GET on the session), so bytes already accepted are not sent again. A session
 *      the registry no longer knows is restarted; a blob that turns out complete is accepted.
 */
import { CloudletError } from '../common/errors';
import { RegistryClient, pullScope, pushScope } from './registryClient';
import { backoffDelay, giveUp, isTransient, sleep } from './retry';

export type UploadOutcome = 'skipped' | 'mounted' | 'uploaded';

export interface UploadResult {
  digest: string;
  size: number;
  outcome: UploadOutcome;
  bytesSent: number;     // blob bytes written for this blob, re-sends included
  resumes: number;       // sessions resumed from the registry's reported offset
  restarts: number;      // sessions started over because the registry lost them
}

export interface UploadOptions {
  chunkSize?: number;
  /** Other repositories on the same registry that may hold this blob (mount source). */
  mountFrom?: string[];
  /** Called with the number of new bytes the registry accepted. */
  onProgress?: (bytes: number) => void;
}

export interface BlobLoader {
  size: number;
  load(): Buffer;
}

export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** "0-1023" (inclusive end) -> 1024 bytes received. Missing or "0-0" on an empty session -> 0. */
function receivedFromRange(range: string | undefined, sessionHasData: boolean): number {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(range?.trim() ?? '');
  if (!m) return 0;
  const end = Number(m[1]);
  // distribution reports "0-0" for an empty session; it cannot mean 1 byte unless we sent some.
  return end === 0 && !sessionHasData ? 0 : end + 1;
}

export class BlobUploader {
  constructor(private readonly client: RegistryClient, private readonly repo: string) {}

  /** `data` may be a loader, called only when the blob really has to be sent (HEAD and mount come first). */
  async upload(data: Buffer | BlobLoader, digest: string, opts: UploadOptions = {}): Promise<UploadResult> {
    const size = Buffer.isBuffer(data) ? data.length : data.size;
    const result: UploadResult = { digest, size, outcome: 'uploaded', bytesSent: 0, resumes: 0, restarts: 0 };
    if ((await this.client.blobSize(this.repo, digest)) !== undefined) {
      result.outcome = 'skipped';
      return result;
    }
    for (const from of opts.mountFrom ?? []) {
      if (from !== this.repo && (await this.tryMount(digest, from))) {
        result.outcome = 'mounted';
        return result;
      }
    }
    await this.sendData(Buffer.isBuffer(data) ? data : data.load(), digest, opts, result);
    return result;
  }

  /** POST ?mount=&from=: 201 = mounted; 202 = not mounted (the registry opened a session instead; left to expire). */
  private async tryMount(digest: string, from: string): Promise<boolean> {
    const q = new URLSearchParams({ mount: digest, from });
    const r = await this.client.send('POST', `/v2/${this.repo}/blobs/uploads/?${q}`, {
      scopes: [pushScope(this.repo), pullScope(from)], headers: { 'content-length': '0' },
      what: `mount of ${digest} into ${this.repo}`,
    });
    if (r.status === 201) return true;
    if (r.status === 202 || r.status === 404 || r.status === 403) return false;
    throw this.client.fail(r, `mount of ${digest} from ${from} into ${this.repo}`);
  }

  private async startSession(): Promise<string> {
    const r = await this.client.send('POST', `/v2/${this.repo}/blobs/uploads/`, {
      scopes: [pushScope(this.repo)], headers: { 'content-length': '0' }, what: `upload start in ${this.registryRepo()}`,
    });
    const location = headerValue(r.headers.location);
    if (r.status !== 202 || !location) throw this.client.fail(r, `upload start in ${this.registryRepo()}`);
    return this.client.resolve(location);
  }

  private registryRepo(): string {
    return `${this.client.registry}/${this.repo}`;
  }

  /** How many bytes the session holds, or undefined when the registry no longer knows it. */
  private async sessionOffset(location: string, sent: boolean): Promise<{ offset: number; location: string } | undefined> {
    const r = await this.client.send('GET', location, { scopes: [pushScope(this.repo)], what: `upload status in ${this.registryRepo()}` });
    if (r.status === 404 || r.status === 400) return undefined;
    if (r.status !== 204 && r.status !== 200) throw this.client.fail(r, `upload status in ${this.registryRepo()}`);
    const next = headerValue(r.headers.location);
    return { offset: receivedFromRange(headerValue(r.headers.range), sent), location: next ? this.client.resolve(next) : location };
  }

  private async sendData(data: Buffer, digest: string, opts: UploadOptions, result: UploadResult): Promise<void> {
    const chunkSize = Math.max(1, opts.chunkSize ?? DEFAULT_CHUNK_SIZE);
    const policy = this.client.retryPolicy;
    let location = await this.startSession();
    let offset = 0;
    let failures = 0;
    const what = `upload of ${digest} to ${this.registryRepo()}`;
    for (;;) {
      const remaining = data.length - offset;
      try {
        if (remaining <= chunkSize) {
          // Last (or only) piece goes with the closing PUT: monolithic for small blobs.
          const url = new URL(location);
          url.searchParams.set('digest', digest);
          const body = data.subarray(offset);
          const r = await this.client.send('PUT', url.toString(), {
            body, retry: false, scopes: [pushScope(this.repo)], what,
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
          });
          result.bytesSent += body.length;
          if (r.status === 201) { opts.onProgress?.(body.length); return; }
          if (r.status === 400 && /DIGEST_INVALID|SIZE_INVALID/.test(r.body.toString())) {
            throw new CloudletError('Corrupt', `the registry computed another digest for ${digest}: the local data changed during upload`);
          }
          if (r.status === 404) { ({ location, offset } = await this.restart(digest, result)); if (offset < 0) return; continue; }
          throw this.client.fail(r, what);
        }
        const body = data.subarray(offset, offset + chunkSize);
        const r = await this.client.send('PATCH', location, {
          body, retry: false, scopes: [pushScope(this.repo)], what,
          headers: {
            'content-type': 'application/octet-stream', 'content-length': String(body.length),
            'content-range': `${offset}-${offset + body.length - 1}`,
          },
        });
        result.bytesSent += body.length;
        if (r.status === 404) { ({ location, offset } = await this.restart(digest, result)); if (offset < 0) return; continue; }
        if (r.status === 416) { // the registry holds a different amount than we thought: ask it
          const s = await this.sessionOffset(location, true);
          if (!s) { ({ location, offset } = await this.restart(digest, result)); if (offset < 0) return; continue; }
          ({ location, offset } = s);
          continue;
        }
        if (r.status !== 202) throw this.client.fail(r, what);
        const next = headerValue(r.headers.location);
        if (next) location = this.client.resolve(next);
        const accepted = receivedFromRange(headerValue(r.headers.range), true);
        opts.onProgress?.(accepted - offset);
        offset = accepted;
        failures = 0;  // progress made: the retry budget is per stall, not per blob
      } catch (e) {
        if (!isTransient(e)) throw e;
        failures++;
        if (failures >= policy.attempts) throw giveUp(what, failures, e);
        this.client.stats.retries++;
        await sleep(backoffDelay(policy, failures), this.client.signal);
        // Ask where the session stands; the status call has its own retries for a registry that is down.
        let s: { offset: number; location: string } | undefined;
        try {
          s = await this.sessionOffset(location, offset > 0);
        } catch (e2) {
          if (!isTransient(e2) && !(e2 instanceof CloudletError && e2.code === 'Unavailable')) throw e2;
          continue;   // still down: the next attempt fails fast and backs off again
        }
        if (!s) { ({ location, offset } = await this.restart(digest, result)); if (offset < 0) return; continue; }
        const before = offset;
        ({ location, offset } = s);
        if (offset > 0 || before > 0) result.resumes++;
        if (offset > before) opts.onProgress?.(offset - before);
      }
    }
  }

  /** The session is gone: done if the blob made it (a lost 201), else a new session. offset -1 = done. */
  private async restart(digest: string, result: UploadResult): Promise<{ location: string; offset: number }> {
    if ((await this.client.blobSize(this.repo, digest)) !== undefined) return { location: '', offset: -1 };
    result.restarts++;
    return { location: await this.startSession(), offset: 0 };
  }
}
