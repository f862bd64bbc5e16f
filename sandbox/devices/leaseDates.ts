/**
 * Lease dates as Blazar takes and gives them. Input: "YYYY-MM-DD HH:MM" (UTC, what blazarclient
 * sends), also with ":SS", a "T" separator, fractional seconds or a trailing "Z", or "now".
 * Output: "YYYY-MM-DDTHH:MM:SS.ffffff" (blazarclient parses that format back).
 * Internally every time is milliseconds since the epoch.
 */
import { CloudletError } from '../common/errors';

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(?:Z|\+00:00)?$/;

export function parseLeaseDate(text: unknown, field: string, now: number): number {
  if (text === 'now') return now;
  if (typeof text !== 'string') throw new CloudletError('BadInput', `${field} is required ("YYYY-MM-DD HH:MM" in UTC, or "now")`);
  const m = DATE_RE.exec(text.trim());
  if (!m) throw new CloudletError('BadInput', `${field} '${text}' is not a date: use "YYYY-MM-DD HH:MM" (UTC) or "now"`);
  const [, y, mo, d, h, mi, s, frac] = m;
  const ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, s ? +s : 0, frac ? Math.floor(Number(`0.${frac}`) * 1000) : 0);
  const back = new Date(ms);
  if (Number.isNaN(ms) || back.getUTCMonth() !== +mo - 1 || back.getUTCDate() !== +d || +h > 23 || +mi > 59) {
    throw new CloudletError('BadInput', `${field} '${text}' is not a valid date`);
  }
  return ms;
}

/** "2025-01-31T14:05:00.000000" (UTC, microseconds as Blazar prints them). */
export function formatLeaseDate(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '000');
}

/** The form blazarclient and our CLI send: "2025-01-31 14:05". */
export function formatApiDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

/** Blazar compares a requested start with the current minute, so "this minute" is not "the past". */
export function startOfMinute(ms: number): number {
  return ms - (ms % 60000);
}
