/**
 * What a client sends a cloudlet with an oci:// synthesis (the server create's `cloudlet:registry_auth`):
 * this user's own stored login to the reference's registry (`cloudlet registry login`, `docker login`:
 * $DOCKER_CONFIG/config.json). A cloudlet does not lend its operator's login to projects, so a private
 * repository is pulled with the login of the user who asks, for that pull only.
 *
 * The login is a password or token, often with push rights: it goes to a cloudlet only when needed.
 * 'auto' (default) asks without it first and sends it once, on a retry, only when the cloudlet says
 * the registry refused the anonymous pull (403, code RegistryRefused: answered before any
 * server exists); 'always' sends it at once; 'never' not at all. Never over plain http to a cloudlet
 * that is not on this machine.
 * In sandbox/registry (it reads the Docker credentials file and parses references), above the client it
 * drives; the extension may import this file beside sandbox/client (.dependency-cruiser.cjs).
 */
import { CloudletError, describeError } from '../common/errors';
import { ApiError, type CloudletClient } from '../client/client';
import { dockerConfigPath, lookupCredentials } from './credentials';
import { isOciUrl, parseReference } from './reference';

export type RegistryLogin = { username: string; password: string };
export type RegistryAuthMode = 'auto' | 'always' | 'never';
export const REGISTRY_AUTH_MODES: readonly RegistryAuthMode[] = ['auto', 'always', 'never'];

/** The login to send, or undefined (not oci://, or no login stored: the pull is anonymous). */
export function registryAuthFor(overlayUrl: string, file = dockerConfigPath()): RegistryLogin | undefined {
  if (!isOciUrl(overlayUrl)) return undefined;
  return lookupCredentials(parseReference(overlayUrl).registry, file)?.toRequestAuth();
}

/** Whether a create's refusal is the registry's (anonymous pull refused), not the cloudlet's own. */
export function isRegistryRefusal(e: unknown): boolean {
  return e instanceof ApiError && e.code === 'RegistryRefused';
}

/** A cloudlet URL a login may travel to: https, or http to this machine only (nobody else on the path). */
export function loginMayGoTo(cloudletUrl: string): boolean {
  const u = new URL(cloudletUrl);
  if (u.protocol === 'https:') return true;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return u.protocol === 'http:' && (host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1');
}

export interface OciCreate { name: string; overlayUrl: string; metadata?: Record<string, string> }

export interface OciCreateOptions {
  mode?: RegistryAuthMode;
  /** The user's login for the reference's registry (default: the Docker credentials file). */
  login?: () => RegistryLogin | undefined | Promise<RegistryLogin | undefined>;
  /** Told when 'auto' could not read the stored login (the anonymous try goes on). */
  warn?: (message: string) => void;
}

/** Create a synthesis server on `c`, with the user's registry login only as the mode allows (see above). */
export async function createSynthesisServer(c: CloudletClient, req: OciCreate, o: OciCreateOptions = {}): Promise<{ id: string; jobId?: string }> {
  const mode = o.mode ?? 'auto';
  if (!isOciUrl(req.overlayUrl) || mode === 'never') return c.createServer(req);
  const registry = parseReference(req.overlayUrl).registry;
  const login = o.login ?? (() => registryAuthFor(req.overlayUrl));
  const withLogin = (registryAuth: RegistryLogin) => {
    const to = c.endpoint('compute');
    if (!loginMayGoTo(to)) {
      throw new CloudletError('BadInput', `not sending your login to registry ${registry} to ${new URL(to).host} over plain http (anyone on the path could read it)`,
        { hint: 'use the cloudlet\'s https:// URL, or --registry-auth never to pull anonymously' });
    }
    return c.createServer({ ...req, registryAuth });
  };
  // An empty password is no login (the cloudlet's schema would refuse the whole create).
  const usable = (l: RegistryLogin | undefined) => (l?.username && l.password ? l : undefined);
  if (mode === 'always') {
    const l = usable(await login());
    return l ? withLogin(l) : c.createServer(req);
  }
  try {
    return await c.createServer(req);
  } catch (e) {
    if (!isRegistryRefusal(e)) throw e;
    let l: RegistryLogin | undefined;
    try {
      l = usable(await login());
    } catch (err) {
      o.warn?.(`the registry refused the anonymous pull and your stored login to ${registry} could not be read: ${describeError(err)}`);
    }
    if (!l) throw e;
    return withLogin(l);
  }
}
