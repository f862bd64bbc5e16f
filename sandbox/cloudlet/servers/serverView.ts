/** A server row as Nova v2.1 shows it (GET /servers/{id}), plus the OS-EXT-CLOUDLET:* fields. */
import type { Server } from '../../client/types';
import type { ServerRow } from '../serverStore';

const POWER = { NOSTATE: 0, RUNNING: 1, PAUSED: 3, SHUTDOWN: 4 };
const VM_STATE: Record<string, [string, number]> = {
  BUILD: ['building', POWER.NOSTATE], ACTIVE: ['active', POWER.RUNNING], PAUSED: ['paused', POWER.PAUSED],
  SHUTOFF: ['stopped', POWER.SHUTDOWN], ERROR: ['error', POWER.NOSTATE], DELETED: ['deleted', POWER.NOSTATE],
};

/** Nova's vm_state name of a server status (what its conflict messages say). */
export function vmStateOf(status: string): string { return VM_STATE[status]?.[0] ?? status; }

/** Nova's timestamp format: ISO 8601 to the second (the store keeps milliseconds). */
export function novaTimestamp(t: string | null): string | null { return t ? t.replace(/\.\d+Z$/, 'Z') : null; }

/** OS-SRV-USG's format: no zone, microseconds. */
function usageTimestamp(t: string | null): string | null { return t ? t.replace(/Z$/, '').replace(/(\.\d{6})\d*$/, '$1') : null; }

export function serverLinks(id: string, base: string): Server['links'] {
  const self = `${base}/servers/${id}`;
  return [{ rel: 'self', href: self }, { rel: 'bookmark', href: self }];
}

/** QEMU's default MAC of a user-mode network card (every sandbox VM has one). */
const GUEST_MAC = '52:54:00:12:34:56';

/**
 * How a server is reached, in Nova's shape: a network named for the cloudlet (its compute host)
 * holding the host address its guest ports are forwarded on. Servers with a VM only (openstacksdk's
 * create_server(wait=True) deletes an ACTIVE server without any address).
 */
export function serverAddresses(r: ServerRow, base: string): { network: string; addr: string } | undefined {
  if (!r.vm_id || !['ACTIVE', 'PAUSED', 'SHUTOFF'].includes(r.status)) return undefined;
  const forwarded = Object.values(r.ports)[0];
  const addr = forwarded ? forwarded.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') : '127.0.0.1';
  let host = 'local';
  try { host = new URL(base).hostname.replace(/^\[|\]$/g, ''); } catch { /* a base that is no URL keeps the default */ }
  return { network: `cloudlet-${host}`, addr };
}

export function serverView(r: ServerRow, base: string): Server {
  const [vmState, power] = VM_STATE[r.status] ?? ['error', 0];
  const reach = serverAddresses(r, base);
  const addresses = reach
    ? { [reach.network]: [{ version: reach.addr.includes(':') ? 6 as const : 4 as const, addr: reach.addr, 'OS-EXT-IPS:type': 'fixed' as const, 'OS-EXT-IPS-MAC:mac_addr': GUEST_MAC }] }
    : {};
  return {
    id: r.id, name: r.name, status: r.status, tenant_id: r.project_id, user_id: r.user_id, metadata: r.metadata,
    hostId: '', image: r.image_id ? { id: r.image_id, links: [{ rel: 'bookmark', href: `${base}/images/${r.image_id}` }] } : '',
    flavor: { id: r.flavor_id, links: [{ rel: 'bookmark', href: `${base}/flavors/${r.flavor_id}` }] },
    created: novaTimestamp(r.created_at), updated: novaTimestamp(r.updated_at), addresses,
    accessIPv4: reach && !reach.addr.includes(':') ? reach.addr : '', accessIPv6: reach?.addr.includes(':') ? reach.addr : '',
    links: serverLinks(r.id, base),
    'OS-DCF:diskConfig': 'MANUAL', progress: r.progress, 'OS-EXT-AZ:availability_zone': 'nova', config_drive: '', key_name: null,
    'OS-SRV-USG:launched_at': usageTimestamp(r.launched_at), 'OS-SRV-USG:terminated_at': null,
    'OS-EXT-STS:task_state': r.task_state, 'OS-EXT-STS:vm_state': vmState, 'OS-EXT-STS:power_state': power,
    security_groups: [{ name: 'default' }], 'os-extended-volumes:volumes_attached': [],
    ...(r.fault ? { fault: r.fault } : {}),
    'OS-EXT-CLOUDLET:job_id': r.job_id, 'OS-EXT-CLOUDLET:base_id': r.base_id, 'OS-EXT-CLOUDLET:ports': r.ports,
  };
}
