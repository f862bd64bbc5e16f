/**
 * `cloudlet login`, `cloudlet cloudlets`, `cloudlet servers`, `cloudlet handoff`, and the
 * `--cloudlet` branch of `cloudlet synthesize` (synthesizeOnCloudlet): everything through sandbox/client.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Command } from 'commander';
import { CertificateError, CloudletClient, discoverAuthUrl, hostKey, normalizeFingerprint, readCaFile, type HandoffReport, type Server } from '../../client';
import { CloudletError, describeError } from '../../common/errors';
import { clientFor, cloudletNames, loadSessions, saveSession, trustOf } from '../sessions';
import { followJob } from '../progressBar';
import { formatBytes } from '../../common/bytes';
import { createSynthesisServer, type RegistryAuthMode } from '../../registry/synthesisLogin';

function readPassword(): string {
  if (process.env.CLOUDLET_PASSWORD) return process.env.CLOUDLET_PASSWORD;
  if (process.stdin.isTTY) throw new CloudletError('BadInput', 'no password: set CLOUDLET_PASSWORD or pipe it on stdin');
  return fs.readFileSync(0, 'utf8').replace(/\r?\n$/, '');
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (c ?? '').padEnd(w[i])).join('  ').trimEnd()).join('\n') + '\n';
}

function serverLine(s: Server): string[] {
  const ports = Object.entries(s['OS-EXT-CLOUDLET:ports'] ?? {}).map(([g, h]) => `${g}->${h}`).join(',');
  return [s.id, s.name, s.status, String(s['OS-EXT-CLOUDLET:base_id'] ?? '').slice(0, 12), ports, s.fault?.message ?? ''];
}

export function register(program: Command): void {
  program.command('login <url>')
    .description('log in to a cloudlet, or to a fleet\'s Keystone (password from CLOUDLET_PASSWORD or stdin), and remember the token')
    .requiredOption('--user <name>', 'user name')
    .requiredOption('--project <name>', 'project to scope the token to')
    .option('--name <name>', 'name to save this cloudlet under (default: its host:port)')
    .option('--ca-file <file>', 'trust HTTPS certificates signed by this CA (PEM) instead of the system store (default: OS_CACERT)')
    .option('--fingerprint <sha256>', 'trust only the HTTPS certificate with this SHA-256 fingerprint at URL\'s host (a self-signed cloudlet: `cloudlet serve` prints it)')
    .action(async (url: string, o: { user: string; project: string; name?: string; caFile?: string; fingerprint?: string }) => {
      if (o.caFile && o.fingerprint) throw new CloudletError('BadInput', '--ca-file and --fingerprint: give one');
      const fingerprint = o.fingerprint ? normalizeFingerprint(o.fingerprint) : undefined;
      const trust = { caFile: o.caFile ?? (fingerprint ? undefined : process.env.OS_CACERT || undefined), pins: fingerprint ? { [hostKey(url)]: fingerprint } : undefined };
      if (trust.caFile) readCaFile(trust.caFile);  // a clear error now, not at the first call
      let c: CloudletClient;
      let authUrl: string;
      try {
        authUrl = await discoverAuthUrl(url, { tls: trustOf(trust) });
        c = await CloudletClient.login({ authUrl, username: o.user, password: readPassword(), project: o.project, tls: trustOf(trust) });
      } catch (e) {
        if (e instanceof CertificateError && e.problem === 'unknown-issuer' && e.presented) {
          throw new CloudletError('Untrusted', e.message, { hint: `if ${e.host} is a self-signed cloudlet and \`cloudlet serve\` printed this fingerprint there, `
            + `log in with --fingerprint ${e.presented.fingerprint}; if a private CA signed it, --ca-file CA.pem` });
        }
        throw e;
      }
      const name = o.name ?? new URL(authUrl).host;
      saveSession({ name, authUrl, user: o.user, project: o.project, token: c.token, expiresAt: c.session.expiresAt, ...(trust.caFile ? { caFile: path.resolve(trust.caFile) } : {}), ...(trust.pins ? { pins: trust.pins } : {}) });
      const regions = c.regions();
      process.stdout.write(`logged in to ${name} as ${o.user} (project ${o.project}), token valid until ${c.session.expiresAt}`
        + `${fingerprint ? `, certificate of ${hostKey(url)} pinned (SHA-256 ${fingerprint})` : trust.caFile ? `, certificates checked against ${trust.caFile}` : ''}\n`
        + (regions.length > 1 ? `cloudlets (regions): ${cloudletNames(name, c).join(', ')}\n` : ''));
    });

  program.command('cloudlets')
    .description('the cloudlets you are logged in to, their services and the base IDs they hold')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const f = loadSessions();
      const out: Record<string, unknown>[] = [];
      for (const s of Object.values(f.cloudlets)) {
        const common = { current: f.current === s.name, auth_url: s.authUrl, user: s.user, project: s.project, expires_at: s.expiresAt };
        let c: CloudletClient;
        try { c = await clientFor(s.name); } catch (e) { out.push({ name: s.name, ...common, state: describeError(e).split('\n')[0] }); continue; }
        // A fleet login: each region of its catalog is a cloudlet.
        const regions = c.regions();
        for (const name of cloudletNames(s.name, c)) {
          const rc = regions.length > 1 ? c.inRegion(name.slice(s.name.length + 1)) : c;
          const row: Record<string, unknown> = { name, ...common, region: rc.region ?? regions[0] };
          try {
            row.services = [...new Set(rc.session.catalog.filter((e) => rc.hasService(e.type)).map((e) => e.type))];
            row.bases = (await rc.listBases()).map((b) => b.base_sha256_uuid);
            row.state = 'ok';
          } catch (e) { row.state = describeError(e).split('\n')[0]; }
          out.push(row);
        }
      }
      if (o.json) { process.stdout.write(JSON.stringify(out, null, 2) + '\n'); return; }
      if (!out.length) { process.stdout.write('no cloudlets: cloudlet login URL --user NAME --project NAME\n'); return; }
      process.stdout.write(table([['', 'NAME', 'URL', 'USER/PROJECT', 'STATE', 'BASES'],
        ...out.map((r) => [r.current ? '*' : '', String(r.name), String(r.auth_url), `${r.user}/${r.project}`, String(r.state),
          ((r.bases as string[] | undefined) ?? []).map((b) => String(b).slice(0, 12)).join(',')])]));
    });

  program.command('servers')
    .description('servers on a cloudlet')
    .option('--cloudlet <name|url>', 'which saved cloudlet (default: the current one)')
    .option('--json', 'machine-readable output')
    .action(async (o: { cloudlet?: string; json?: boolean }) => {
      const c = await clientFor(o.cloudlet);
      const servers = await c.listServers();
      if (o.json) { process.stdout.write(JSON.stringify(servers, null, 2) + '\n'); return; }
      process.stdout.write(table([['ID', 'NAME', 'STATUS', 'BASE', 'PORTS', 'FAULT'], ...servers.map(serverLine)]));
    });

  program.command('handoff <server>')
    .description('move a running server to another cloudlet (log in to both first; within a fleet, your one login serves both)')
    .requiredOption('--to <url|name>', 'destination cloudlet: a saved login, NAME/REGION, or a region of the source\'s fleet')
    .option('--cloudlet <name|url>', 'source cloudlet (default: the current one)')
    .option('--name <name>', 'name of the server at the destination')
    .option('--json', 'print the report as JSON')
    .action(async (server: string, o: { to: string; cloudlet?: string; name?: string; json?: boolean }) => {
      const src = await clientFor(o.cloudlet);
      const dst = await destinationClient(src, o.to);
      const id = await resolveServer(src, server);
      // Within a fleet dst.token is the user's own token (one Keystone): the destination checks it
      // like any call of that user; nothing is minted or logged in to on the user's behalf.
      const { jobId } = await src.handoff(id, { handoffUrl: dst.endpoint('compute'), destToken: dst.token, destVmName: o.name, destFingerprint: dst.trust?.pins?.[hostKey(dst.endpoint('compute'))] });
      const end = await followJob(src, jobId, 'handoff');
      const r = end.result as HandoffReport;
      if (o.json) { process.stdout.write(JSON.stringify(r) + '\n'); return; }
      process.stdout.write(`handed off to ${r.destination} as ${r.destination_server_id}: ${(r.total_ms / 1000).toFixed(2)} s total, `
        + `${formatBytes(r.bytes_sent)} in ${r.rounds} rounds, downtime ${r.downtime_ms} ms\n`);
    });
}

/** The destination of a handoff: a region of the source's own fleet login, or another saved login. */
async function destinationClient(src: CloudletClient, to: string): Promise<CloudletClient> {
  if (src.regions().includes(to) && !loadSessions().cloudlets[to]) return src.inRegion(to);
  return clientFor(to);
}

async function resolveServer(c: CloudletClient, ref: string): Promise<string> {
  const all = await c.listServers();
  const hit = all.filter((s) => s.id === ref || s.name === ref);
  if (hit.length === 1) return hit[0].id;
  if (!hit.length) throw new CloudletError('NotFound', `no server ${ref} on ${c.session.authUrl}`);
  throw new CloudletError('BadInput', `${hit.length} servers are named ${ref}; give the ID`);
}

/**
 * `cloudlet synthesize --cloudlet URL OVERLAY`: OVERLAY is an http(s)/oci URL the cloudlet fetches
 * itself, or a local overlay file first uploaded to the cloudlet's image service.
 */
export async function synthesizeOnCloudlet(cloudlet: string, overlay: string, o: { name?: string; ports?: string; json?: boolean; quiet?: boolean; registryAuth?: RegistryAuthMode } = {}): Promise<Server> {
  const c = await clientFor(cloudlet);
  let overlayUrl = overlay;
  if (!/^(https?|oci):\/\//.test(overlay)) {
    if (!fs.existsSync(overlay)) throw new CloudletError('NotFound', `overlay file ${overlay} not found`);
    const size = fs.statSync(overlay).size;
    const img = await c.createImage({ name: path.basename(overlay), cloudlet_type: 'cloudlet_overlay', is_cloudlet: 'True' });
    process.stderr.write(`uploading ${path.basename(overlay)} (${formatBytes(size)}) to ${c.endpoint('image')}\n`);
    const { Readable } = await import('stream');
    await c.uploadImageData(img.id, Readable.toWeb(fs.createReadStream(overlay)) as ReadableStream<Uint8Array>, size);
    overlayUrl = `${c.endpoint('image')}/v2/images/${img.id}/file`;
  }
  const name = o.name ?? `synth-${Date.now().toString(36)}`;
  // An overlay on another saved cloudlet with a pinned certificate: the synthesizing daemon pins it too.
  const pinned = overlayUrl.startsWith('https:') ? Object.values(loadSessions().cloudlets).map((s) => s.pins?.[hostKey(overlayUrl)]).find(Boolean) : undefined;
  // oci://: this user's own registry login (cloudlet registry login / docker login) goes with a retry
  // only when the registry refused the anonymous pull (--registry-auth auto), for that pull only.
  const { id, jobId } = await createSynthesisServer(c, { name, overlayUrl, metadata: { ...(o.ports ? { ports: o.ports } : {}), ...(pinned ? { overlay_tls_fingerprint: pinned } : {}) } },
    { mode: o.registryAuth, warn: (m) => process.stderr.write(`warning: ${m}\n`) });
  if (jobId) await followJob(c, jobId, 'synthesis');
  const s = await c.getServer(id);
  if (o.json) process.stdout.write(JSON.stringify(s) + '\n');
  else if (!o.quiet) process.stdout.write(table([['ID', 'NAME', 'STATUS', 'BASE', 'PORTS', 'FAULT'], serverLine(s)]));
  return s;
}
