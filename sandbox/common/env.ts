/**
 * A number from an environment variable (timeouts and tuning knobs tests and operators set). Unset,
 * empty, not a number or below `min`: the default, so a typo never becomes a zero timeout.
 */
export function envNumber(name: string, fallback: number, min = -Infinity): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const v = Number(text);
  return Number.isFinite(v) && v >= min ? v : fallback;
}
