/**
 * Host ports for a VM's forwards (resolvePorts): never the same host port for two guest ports, even
 * when the kernel hands the same free port out twice in a row (freePort closes its probe socket).
 */
import { strict as assert } from 'assert';
import { resolvePorts } from '../../../sandbox/qemu/ports';

describe('resolvePorts: distinct host ports', () => {
  it('a port picked twice in a row is picked again for the second forward', async () => {
    const picks = [41977, 41977, 41977, 41978];
    const ports = await resolvePorts([80, 5000], async () => picks.shift()!);
    assert.deepEqual(ports, [{ guest: 80, host: 41977 }, { guest: 5000, host: 41978 }]);
  });
  it('a picker that never gives another port fails clearly instead of looping', async () => {
    await assert.rejects(resolvePorts([80, 5000], async () => 41977), /no free loopback port other than 41977/);
  });
  it('with the real picker: distinct ports, first request per guest port wins', async () => {
    const ports = await resolvePorts([80, 5000, 80, 22]);
    assert.deepEqual(ports.map((p) => p.guest), [80, 5000, 22]);
    assert.equal(new Set(ports.map((p) => p.host)).size, 3);
  });
});
