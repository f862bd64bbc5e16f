/** Loopback ports for forwards: a free one picked by the kernel, or a requested one checked free. */
import * as net from 'net';
import { CloudletError } from '../common/errors';
import { isTcpPort } from '../common/tcpPort';

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export function checkPortFree(port: number, host = '127.0.0.1'): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', () => reject(new CloudletError('Conflict', `port ${host}:${port} is already in use`, { hint: 'pick another host port, or leave it out to get a free one' })));
    s.listen(port, host, () => s.close(() => resolve()));
  });
}

export interface PortForward { guest: number; host: number }

/** Port request: a guest port (host port picked free) or an explicit pair. */
export type PortRequest = number | { guest: number; host?: number };

/**
 * Forwards for requests (first request per guest port wins); explicit host ports must be free. `pick`:
 * a free port (freePort closes its probe socket, so the kernel may hand the same port out twice in a row:
 * a second forward on the same host port makes QEMU refuse to start, seen once in a handoff).
 */
export async function resolvePorts(reqs: PortRequest[], pick: () => Promise<number> = freePort): Promise<PortForward[]> {
  const out: PortForward[] = [];
  const unused = async () => {
    for (let tries = 0; ; tries++) {
      const p = await pick();
      if (!out.some((f) => f.host === p)) return p;
      if (tries >= 20) throw new CloudletError('Internal', `no free loopback port other than ${out.map((f) => f.host).join(', ')}`);
    }
  };
  for (const q of reqs) {
    const guest = typeof q === 'number' ? q : q.guest;
    if (!isTcpPort(guest)) throw new CloudletError('BadInput', `bad guest port ${guest}`);
    if (out.some((p) => p.guest === guest)) continue;
    const want = typeof q === 'number' ? undefined : q.host;
    if (want) { await checkPortFree(want); out.push({ guest, host: want }); } else out.push({ guest, host: await unused() });
  }
  return out;
}

/** The same forwards again where their host ports are still free, else new free ones (a restart). */
export async function reclaimPorts(ports: PortForward[]): Promise<PortForward[]> {
  const out: PortForward[] = [];
  for (const p of ports) { try { await checkPortFree(p.host); out.push(p); } catch { out.push({ guest: p.guest, host: await freePort() }); } }
  return out;
}
