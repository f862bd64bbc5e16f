/** What the editor reads and fixes in a workspace's cloudlet.yaml (pure, unit-tested). */
import type { ImageInfo } from '../api';

/** The `base:` line of a cloudlet.yaml: its line number, the value and where the value sits. */
export function yamlBase(text: string): { line: number; value: string; start: number; end: number } | undefined {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(base:\s*)(["']?)([^"'#\s]+)\2\s*(#.*)?$/.exec(lines[i].replace(/\r$/, ''));
    if (m) return { line: i, value: m[3], start: m[1].length, end: m[1].length + m[2].length * 2 + m[3].length };
  }
  return undefined;
}

/** Does a local base answer to `ref` (its name, or its base ID / image ID or a prefix of one)? */
export function baseMatches(b: ImageInfo, ref: string): boolean {
  return b.name === ref || (ref.length >= 6 && (!!b.baseId?.startsWith(ref) || b.id.startsWith(ref)));
}
