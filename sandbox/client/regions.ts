/**
 * A fleet's catalog, as an operator keeps it: each cloudlet is a region of one Keystone, holding
 * the endpoints of that cloudlet's services (compute, image, reservation, container, ...).
 * Keystone v3 admin calls (regions, services, endpoints) through a CloudletClient logged in with a
 * role that may change the catalog (admin). Used by `cloudlet region register` and by a daemon
 * that registers itself at start (identity.register_region).
 */
import type { CloudletClient } from './client';
import { ApiError } from './client';
import { CloudletError } from '../common/errors';

interface KsRegion { id: string; description?: string }
interface KsService { id: string; type: string; name: string; enabled?: boolean }
interface KsEndpoint { id: string; service_id: string; region_id: string | null; interface: string; url: string; enabled?: boolean }

/** OpenStack's usual names of the service types a cloudlet offers. */
export const SERVICE_NAMES: Record<string, string> = {
  identity: 'keystone', compute: 'nova', image: 'glance', reservation: 'blazar', container: 'zun',
  inventory: 'doni', cloudlet: 'cloudlet', 'cloudlet-sandbox': 'cloudlet-sandbox',
};

const INTERFACES = ['public', 'internal'] as const;

export interface RegionChange { type: string; interface: string; url: string; change: 'created' | 'updated' | 'unchanged' }

/** What a daemon says about itself at its root (GET /): its region and every service's URL. */
export async function describeCloudlet(url: string, o: { timeoutMs?: number; fetch?: typeof fetch } = {}): Promise<{ region?: string; services: Record<string, string> }> {
  const root = url.replace(/\/+$/, '') + '/';
  let res: Response;
  try {
    res = await (o.fetch ?? fetch)(root, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(o.timeoutMs ?? 15_000) });
  } catch (e) {
    throw new CloudletError('Unavailable', `the cloudlet at ${root} did not answer: ${((e as Error).cause as Error | undefined)?.message ?? (e as Error).message}`);
  }
  const j = (await res.json().catch(() => undefined)) as { cloudlet?: boolean; region?: string; services?: Record<string, string> } | undefined;
  if (!res.ok || !j?.cloudlet || !j.services || typeof j.services !== 'object') throw new CloudletError('BadInput', `${root} is not a cloudlet daemon (no service list at its root)`);
  return { region: j.region, services: j.services };
}

/**
 * Makes region `region` hold these service URLs (public and internal), creating the region and
 * any missing service; endpoints that differ are updated. The region also gets the Keystone's own
 * identity endpoint when it has none, so region-scoped clients find it. Idempotent, and safe when
 * several cloudlets register at once: each service type converges on one service (the smallest id).
 */
export async function registerRegion(admin: CloudletClient, region: string, services: Record<string, string>, description?: string): Promise<RegionChange[]> {
  // A pass can lose an endpoint to a concurrent registration dropping its duplicate service: check and go again.
  for (let pass = 0; ; pass++) {
    const changes = await registerOnce(admin, region, services, description);
    const call = <T>(path: string) => admin.call<T>('identity', 'GET', admin.session.authUrl + path);
    const [eps, svcs] = await Promise.all([call<{ endpoints: KsEndpoint[] }>(`/endpoints?region_id=${encodeURIComponent(region)}`), call<{ services: KsService[] }>('/services')]);
    const typeOf = new Map(svcs.services.map((x) => [x.id, x.type]));
    const have = new Set(eps.endpoints.filter((e) => e.region_id === region).map((e) => `${typeOf.get(e.service_id)}/${e.interface}`));
    if (changes.every((c) => have.has(`${c.type}/${c.interface}`)) || pass >= 2) return changes;
  }
}

async function registerOnce(admin: CloudletClient, region: string, services: Record<string, string>, description?: string): Promise<RegionChange[]> {
  const call = <T>(method: string, path: string, body?: Record<string, unknown>) => admin.call<T>('identity', method, admin.session.authUrl + path, body);
  try {
    await call('POST', '/regions', { region: { id: region, description: description ?? `cloudlet ${region}` } });
  } catch (e) {
    if (!(e instanceof ApiError && e.httpStatus === 409)) throw permission(e);
  }
  const endpoints = (await call<{ endpoints: KsEndpoint[] }>('GET', `/endpoints?region_id=${encodeURIComponent(region)}`)).endpoints
    .filter((e) => e.region_id === region);
  const out: RegionChange[] = [];
  const wanted = Object.entries(services).filter(([t]) => t !== 'identity').map(([t, u]) => [t, u.replace(/\/+$/, '')] as const);
  for (const [type, url] of [...wanted, ['identity', admin.session.authUrl] as const].sort(([a], [b]) => a.localeCompare(b))) {
    const svc = await oneService(call, type);
    for (const iface of INTERFACES) {
      const mine = endpoints.filter((e) => e.interface === iface && svc.all.includes(e.service_id));
      // Endpoints of a duplicate service of this type (a registration race) go; the canonical one stays.
      for (const e of mine.filter((x) => x.service_id !== svc.id)) await call('DELETE', `/endpoints/${e.id}`).catch(() => undefined);
      const ep = mine.find((e) => e.service_id === svc.id);
      if (!ep) {
        await call('POST', '/endpoints', { endpoint: { service_id: svc.id, region_id: region, interface: iface, url, enabled: true } });
        out.push({ type, interface: iface, url, change: 'created' });
      } else if (type !== 'identity' && (ep.url !== url || ep.enabled === false)) {
        // The Keystone's own endpoint is left as the operator set it.
        await call('PATCH', `/endpoints/${ep.id}`, { endpoint: { url, enabled: true } });
        out.push({ type, interface: iface, url, change: 'updated' });
      } else {
        out.push({ type, interface: iface, url: ep.url, change: 'unchanged' });
      }
    }
  }
  return out;
}

/** The one service of `type` (created when missing); `all` lists every service of the type, duplicates too. */
async function oneService(call: <T>(m: string, p: string, b?: Record<string, unknown>) => Promise<T>, type: string): Promise<{ id: string; all: string[] }> {
  const list = async () => (await call<{ services: KsService[] }>('GET', `/services?type=${encodeURIComponent(type)}`)).services.filter((s) => s.type === type);
  let found = await list();
  let created: string | undefined;
  if (!found.length) {
    created = (await call<{ service: KsService }>('POST', '/services', { service: { type, name: SERVICE_NAMES[type] ?? type, enabled: true } })).service.id;
    found = await list();
  }
  const ids = found.map((s) => s.id).sort();
  // Another cloudlet created one at the same time: everyone keeps the smallest id, the others drop theirs.
  if (created && created !== ids[0]) await call('DELETE', `/services/${created}`).catch(() => undefined);
  return { id: ids[0], all: ids };
}

/** Removes a region's endpoints and then the region. */
export async function removeRegion(admin: CloudletClient, region: string): Promise<number> {
  const call = <T>(method: string, path: string) => admin.call<T>('identity', method, admin.session.authUrl + path);
  const eps = (await call<{ endpoints: KsEndpoint[] }>('GET', `/endpoints?region_id=${encodeURIComponent(region)}`).catch((e) => { throw permission(e); })).endpoints
    .filter((e) => e.region_id === region);
  for (const e of eps) await call('DELETE', `/endpoints/${e.id}`);
  try { await call('DELETE', `/regions/${encodeURIComponent(region)}`); } catch (e) {
    if (!(e instanceof ApiError && e.httpStatus === 404)) throw e;
    if (!eps.length) throw new CloudletError('NotFound', `region ${region} is not in the catalog`);
  }
  return eps.length;
}

/** Every region of the catalog with the service types it has endpoints for. */
export async function listRegions(c: CloudletClient): Promise<{ id: string; description?: string; services: Record<string, string> }[]> {
  const call = <T>(path: string) => c.call<T>('identity', 'GET', c.session.authUrl + path);
  const [regions, services, endpoints] = await Promise.all([
    call<{ regions: KsRegion[] }>('/regions'), call<{ services: KsService[] }>('/services'), call<{ endpoints: KsEndpoint[] }>('/endpoints?interface=public'),
  ]).catch((e) => { throw permission(e); });
  const typeOf = new Map(services.services.map((s) => [s.id, s.type]));
  return regions.regions.map((r) => ({
    id: r.id, description: r.description,
    services: Object.fromEntries(endpoints.endpoints.filter((e) => e.region_id === r.id && e.interface === 'public').map((e) => [typeOf.get(e.service_id) ?? e.service_id, e.url])),
  })).sort((a, b) => a.id.localeCompare(b.id));
}

function permission(e: unknown): unknown {
  if (e instanceof ApiError && e.httpStatus === 403) {
    return new CloudletError('Forbidden', `changing or reading the catalog needs the admin role at Keystone: ${e.message}`, { hint: 'log in as a Keystone admin (OS_USERNAME/OS_PASSWORD of an admin, or cloudlet login ... --user admin)' });
  }
  return e;
}
