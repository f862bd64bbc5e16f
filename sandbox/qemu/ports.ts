/** Loopback ports for forwards: a free one picked by the kernel, or a requested one checked free. */
import * as net from 'net';
import { CloudletError } from '../common/errors';

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
