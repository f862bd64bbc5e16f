/** How one API call is written to the output channel (pure, unit-tested). */
import type { ApiCallRecord } from '../api';

const SECRET_PARAMS = /([?&](?:token|password|secret|key|sig|signature|x-auth-token)=)[^&]*/gi;

/** A URL as logged: query values that could be secrets replaced, user:password@ dropped. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//').replace(SECRET_PARAMS, '$1***');
}

export function formatCall(c: ApiCallRecord): string {
  const status = c.status === 'error' ? `failed (${c.error ?? 'network error'})` : String(c.status);
  return `${c.method.toUpperCase()} ${redactUrl(c.url)} ${status} ${Math.round(c.ms)}ms`;
}
