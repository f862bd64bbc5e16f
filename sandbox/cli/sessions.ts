/**
 * Saved cloudlet logins for the CLI: <config>/cloudlet/sessions.json (mode 0600), holding each
 * cloudlet's auth URL, user, project, current token (never the password) and how its TLS
 * certificate is trusted (a CA file, pinned fingerprints by host; neither: the system store).
 * A login to a fleet's Keystone is one saved session whose catalog has several regions; one of
 * its cloudlets is named NAME/REGION (e.g. fleet/edge2), all on the one token.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CloudletClient, readCaFile, type ClientOptions, type TlsTrust } from '../client';
import { CloudletError } from '../common/errors';

export interface SavedSession { name: string; authUrl: string; user: string; project: string; token: string; expiresAt: string; caFile?: string; pins?: Record<string, string> }
interface SessionFile { current?: string; cloudlets: Record<string, SavedSession> }

export function sessionsFile(): string {
  const dir = process.env.CLOUDLET_CONFIG_DIR || path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'cloudlet');
  return path.join(dir, 'sessions.json');
}

export function loadSessions(): SessionFile {
  try { return JSON.parse(fs.readFileSync(sessionsFile(), 'utf8')) as SessionFile; } catch { return { cloudlets: {} }; }
}

export function saveSession(s: SavedSession, makeCurrent = true): void {
  const f = loadSessions();
  f.cloudlets[s.name] = s;
  if (makeCurrent || !f.current) f.current = s.name;
  fs.mkdirSync(path.dirname(sessionsFile()), { recursive: true, mode: 0o700 });
  const tmp = `${sessionsFile()}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(f, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, sessionsFile());
}

/** "fleet/edge2" -> the saved session "fleet", region edge2; a URL or a plain name has no region. */
export function splitRegionRef(ref: string): { ref: string; region?: string } {
  const m = /^([\w.-]+)\/([A-Za-z0-9][\w.-]*)$/.exec(ref);
  return m ? { ref: m[1], region: m[2] } : { ref };
}

/** A saved session by name, by URL (any URL of that daemon) or the current one. */
export function findSession(ref?: string): SavedSession {
  if (ref) ref = splitRegionRef(ref).ref;
  const f = loadSessions();
  const all = Object.values(f.cloudlets);
  if (!ref) {
    const s = f.current ? f.cloudlets[f.current] : undefined;
    if (!s) throw new CloudletError('BadInput', 'not logged in to any cloudlet', { hint: 'cloudlet login URL --user NAME --project NAME' });
    return s;
  }
  const byName = f.cloudlets[ref];
  if (byName) return byName;
  const origin = safeOrigin(ref);
  const s = all.find((x) => safeOrigin(x.authUrl) === origin);
  if (!s) throw new CloudletError('BadInput', `no saved login for ${ref}`, { hint: `cloudlet login ${ref} --user NAME --project NAME` });
  return s;
}

function safeOrigin(u: string): string | undefined { try { return new URL(u).origin; } catch { return undefined; } }

/** A client for a saved session (in its region for NAME/REGION); a clear message when its token has expired. */
export async function clientFor(ref?: string, o: ClientOptions = {}): Promise<CloudletClient> {
  const s = findSession(ref);
  if (Date.parse(s.expiresAt) <= Date.now()) {
    throw new CloudletError('Unauthorized', `the token for ${s.name} has expired`, { hint: `cloudlet login ${s.authUrl} --user ${s.user} --project ${s.project}` });
  }
  const c = await CloudletClient.fromToken(s.authUrl, s.token, { ...o, tls: trustOf(s) });
  const region = ref ? splitRegionRef(ref).region : undefined;
  return region ? c.inRegion(region) : c;
}

/** How a saved cloudlet's certificates are verified: pinned ones by host, else its CA file, else the system store. */
export function trustOf(s: { caFile?: string; pins?: Record<string, string> }): TlsTrust {
  return { ...(s.caFile ? { ca: readCaFile(s.caFile) } : {}), ...(s.pins && Object.keys(s.pins).length ? { pins: s.pins } : {}) };
}

/** The NAME/REGION names of a session's cloudlets: one per region when its catalog has several. */
export function cloudletNames(name: string, c: CloudletClient): string[] {
  const regions = c.regions();
  return regions.length > 1 ? regions.map((r) => `${name}/${r}`) : [name];
}
