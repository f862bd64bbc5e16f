/** Reading what the `cloudlet` CLI prints when the extension runs it (pure, unit-tested). */

/** Parses a progress line of `cloudlet base create` (stderr): "  phase: message" or "  phase message 42%". */
export function parseProgressLine(line: string): { phase: string; message: string; pct?: number } | undefined {
  const pct = /^\s+(\S+)\s+(.*?)\s*(\d{1,3})%$/.exec(line);
  if (pct) return { phase: pct[1], message: pct[2], pct: Number(pct[3]) };
  const m = /^\s+([\w-]+):\s*(.*)$/.exec(line);
  return m ? { phase: m[1], message: m[2] } : undefined;
}
