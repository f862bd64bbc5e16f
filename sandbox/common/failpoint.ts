/**
 * Test hooks for crash tests: CLOUDLET_FAILPOINT=<name> makes the process stop at that point (the
 * test then kills it and checks what the next start cleans up). Each hit is announced on stderr as
 * "FAILPOINT <name>", the line the tests wait for. Never set outside tests.
 */

/** Whether the failpoint `name` is set (says nothing: for a step before the one that announces it). */
export function failpointSet(name: string): boolean {
  return process.env.CLOUDLET_FAILPOINT === name;
}

/** Whether the failpoint `name` is set; if so, announces it (the caller then misbehaves its own way). */
export function failpointHit(name: string, detail = ''): boolean {
  if (!failpointSet(name)) return false;
  process.stderr.write(`FAILPOINT ${name}${detail}\n`);
  return true;
}

/** With the failpoint `name` set: announces it and never returns. */
export async function failpoint(name: string, detail = ''): Promise<void> {
  if (failpointHit(name, detail)) await new Promise(() => undefined);
}
