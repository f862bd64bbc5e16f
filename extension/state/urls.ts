/** Where a server's back-end answers: its forwarded ports as URLs (pure, unit-tested). */
import type { ServerInfo } from '../api';

/**
 * One http:// URL per forwarded TCP port ("8080/tcp" or "80" -> "HOST:PORT"), lowest guest port
 * first. A wildcard host (0.0.0.0, ::) is reached at the cloudlet's own host name.
 */
export function serverUrls(s: Pick<ServerInfo, 'ports'>, cloudletUrl?: string): string[] {
  const fallback = (() => { try { return cloudletUrl ? new URL(cloudletUrl).hostname : '127.0.0.1'; } catch { return '127.0.0.1'; } })();
  return Object.entries(s.ports ?? {})
    .filter(([guest]) => !/\/udp$/i.test(guest))
    .map(([guest, host]) => {
      const i = host.lastIndexOf(':');
      if (i < 0 || !/^\d+$/.test(host.slice(i + 1))) return undefined;
      let h = host.slice(0, i).replace(/^\[|\]$/g, '');
      if (h === '0.0.0.0' || h === '::' || h === '') h = fallback;
      return { port: parseInt(guest, 10), url: `http://${h.includes(':') ? `[${h}]` : h}:${host.slice(i + 1)}/` };
    })
    .filter((x): x is { port: number; url: string } => !!x)
    .sort((a, b) => a.port - b.port)
    .map((x) => x.url);
}
