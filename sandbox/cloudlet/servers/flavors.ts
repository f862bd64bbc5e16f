/** The flavors a cloudlet offers (Nova's names and sizes; the VM's real size comes from its base). */
export const FLAVORS = [
  { id: '1', name: 'cloudlet.small', ram: 512, vcpus: 1, disk: 4 },
  { id: '2', name: 'cloudlet.medium', ram: 1024, vcpus: 1, disk: 8 },
  { id: '3', name: 'cloudlet.large', ram: 2048, vcpus: 2, disk: 16 },
] as const;

export type FlavorSpec = typeof FLAVORS[number];

export function findFlavor(id: string): FlavorSpec | undefined {
  return FLAVORS.find((f) => f.id === id);
}
