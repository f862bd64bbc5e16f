/**
 * How deep arrays and objects nest in JSON text, found without parsing it: what a parser (or
 * anything that later walks the value recursively) is spared when a client sends `[[[[...` by the
 * megabyte. Counts no further than `cap` + 1.
 */
export function jsonDepth(text: string, cap: number): number {
  let depth = 0, max = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;            // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) { if (++depth > max && (max = depth) > cap) return max; }
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}
