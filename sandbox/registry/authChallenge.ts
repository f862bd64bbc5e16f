/**
 * Parses a `WWW-Authenticate` header (RFC 7235): a scheme and comma-separated key="value" params.
 * Registries answer 401 with `Basic realm=...` (htpasswd) or `Bearer realm=...,service=...,scope=...`
 * (token servers: Docker Hub, GHCR, Harbor).
 */
export interface AuthChallenge {
  scheme: 'basic' | 'bearer' | string;
  params: Record<string, string>;
}

export function parseAuthChallenge(header: string | string[] | undefined): AuthChallenge | undefined {
  const value = Array.isArray(header) ? header.find((h) => /^\s*bearer/i.test(h)) ?? header[0] : header;
  if (!value) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9-]*)\s*(.*)$/s.exec(value);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/gy;
  const rest = m[2];
  re.lastIndex = 0;
  let p: RegExpExecArray | null;
  while (re.lastIndex < rest.length && (p = re.exec(rest))) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}
