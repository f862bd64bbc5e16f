/** A TCP/UDP port number a guest or host can listen on: an integer 1..65535. */
export function isTcpPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;
}
