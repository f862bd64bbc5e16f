/**
 * `cloudlet overlay publish|pull` (added to the `overlay` group) and `cloudlet registry login|logout|published`.
 * Output: one human summary on stdout, or the report as JSON with --json. Progress bars on stderr when
 * it is a terminal. Passwords are read from stdin or a no-echo prompt and never printed.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { CloudletError } from '../../common/errors';
import { storePaths } from '../../common/paths';
import { ProgressSink } from '../../common/progress';
import { resolveOverlayPath } from './overlay';
import {
  Credentials, defaultBlobCacheDir, dockerConfigPath, listPublications, parseReference, plainHttpSetting, publishOverlay,
  pullOverlay, readCaFile, RegistryClient, removeCredentials, storeCredentials,
} from '../../registry';
import { formatBytes } from '../../common/bytes';
import { parseProfile } from '../../overlay/recompress';

function overlayCommand(program: Command): Command {
  return program.commands.find((c) => c.name() === 'overlay')
    ?? program.command('overlay').description('VM overlays: create, inspect, publish and pull');
}


function progressBar(label: string): { sink: ProgressSink; stop: () => void } {
  if (!process.stderr.isTTY) return { sink: () => {}, stop: () => {} };
  const bar = new SingleBar({ format: `${label} [{bar}] {percentage}% {value}/{total} bytes`, stream: process.stderr }, Presets.shades_classic);
  let started = false;
  return {
    sink: (e) => {
      if (e.total === undefined) return;
      if (!started) { bar.start(e.total, e.done ?? 0); started = true; } else bar.update(e.done ?? 0);
    },
    stop: () => { if (started) bar.stop(); },
  };
}

async function readPasswordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Prompts without echo on a terminal. */
async function promptHidden(question: string): Promise<string> {
  if (!process.stdin.isTTY) throw new CloudletError('BadInput', 'no terminal to ask for the password', { hint: 'pipe it in with --password-stdin' });
  process.stderr.write(question);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  let value = '';
  return new Promise((resolve, reject) => {
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') { done(); resolve(value); return; }
        if (ch === '\u0003') { done(); reject(new CloudletError('Cancelled', 'cancelled')); return; }
        if (ch === '\u007f') value = value.slice(0, -1); else value += ch;
      }
    };
    const done = () => { stdin.setRawMode(false); stdin.pause(); stdin.off('data', onData); process.stderr.write('\n'); };
    stdin.on('data', onData);
  });
}

interface ConnOpts { ca?: string; plainHttp?: boolean }

function connection(o: ConnOpts) {
  return { ca: readCaFile(o.ca), plainHttp: plainHttpSetting(o.plainHttp) };
}

/** Ctrl-C cancels the transfer cleanly (the pulled file is only renamed into place when complete). */
function cancelOnSigint(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const on = () => ac.abort();
  process.once('SIGINT', on);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', on) };
}

export function register(program: Command): void {
  const overlay = overlayCommand(program);

  overlay.command('publish')
    .description('publish an overlay to an OCI registry; uploads only the segments the registry lacks')
    .argument('<overlay>', 'overlay file, or an overlay ID from the local store')
    .argument('<ref>', 'HOST[:PORT]/REPOSITORY[:TAG] (oci:// prefix allowed)')
    .option('--ca <file>', 'PEM CA certificate to trust for the registry (or CLOUDLET_REGISTRY_CA)')
    .option('--plain-http', 'talk plain HTTP to the registry (loopback registries are detected)')
    .option('--mount-from <repo...>', 'repositories of the same registry to mount segments from')
    .option('--chunk-size <bytes>', 'upload blobs larger than this in chunks', (v) => Number(v))
    .option('--profile <name>', 'wire: re-compress for size first (xz 9 per image, same overlay ID); build: publish the file as it is', 'wire')
    .option('--json', 'print the report as JSON')
    .action(async (file: string, ref: string, o: ConnOpts & { mountFrom?: string[]; chunkSize?: number; profile: string; json?: boolean }) => {
      const profile = parseProfile(o.profile);
      const bar = progressBar('upload');
      const c = cancelOnSigint();
      try {
        const r = await publishOverlay(resolveOverlayPath(file), ref, {
          ...connection(o), mountFrom: o.mountFrom, chunkSize: o.chunkSize, progress: bar.sink, signal: c.signal, profile, tmpDir: storePaths().tmp,
        });
        bar.stop();
        const wire = r.recompressed;
        if (o.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return; }
        process.stdout.write([
          `published overlay ${r.overlayId}`,
          `  profile    ${profile}${wire ? ` (re-compressed ${formatBytes(wire.fromBytes)} -> ${formatBytes(wire.toBytes)} in ${wire.seconds.toFixed(1)} s)` : ''}`,
          `  reference  ${r.reference}`,
          `  digest     ${r.digestReference}`,
          `  segments   ${r.segments.total}: ${r.segments.uploaded} uploaded, ${r.segments.skipped} already there, ${r.segments.mounted} mounted`,
          `  bytes      ${formatBytes(r.segmentBytes.uploaded)} sent, ${formatBytes(r.segmentBytes.skipped + r.segmentBytes.mounted)} skipped of ${formatBytes(r.segmentBytes.total)}`,
          `  time       ${r.seconds.toFixed(2)} s${r.retries ? `, ${r.retries} retries` : ''}`,
          '',
        ].join('\n'));
      } finally {
        bar.stop();
        c.dispose();
      }
    });

  overlay.command('pull')
    .description('download an overlay from an OCI registry (segments in parallel, every digest verified)')
    .argument('<ref>', 'HOST[:PORT]/REPOSITORY:TAG or ...@sha256:DIGEST (oci:// prefix allowed)')
    .option('-o, --output <file>', 'where to write the overlay file (default: the store, named by overlay ID)')
    .option('--ca <file>', 'PEM CA certificate to trust for the registry (or CLOUDLET_REGISTRY_CA)')
    .option('--plain-http', 'talk plain HTTP to the registry')
    .option('--cache <dir>', 'verified segment cache (default: <store>/cache/blobs)')
    .option('--json', 'print the report as JSON')
    .action(async (ref: string, o: ConnOpts & { output?: string; cache?: string; json?: boolean }) => {
      const bar = progressBar('download');
      const c = cancelOnSigint();
      try {
        let out = o.output;
        if (!out) {
          fs.mkdirSync(storePaths().overlays, { recursive: true });
          out = path.join(storePaths().overlays, '.pull-' + process.pid + '.overlay');
        }
        const r = await pullOverlay(ref, out, { ...connection(o), cacheDir: o.cache ?? defaultBlobCacheDir(), progress: bar.sink, signal: c.signal });
        if (!o.output) {
          // Into the store under its ID, like a locally built overlay.
          r.file = path.join(storePaths().overlays, `${r.overlayId}.overlay`);
          fs.renameSync(out, r.file);
        }
        bar.stop();
        if (o.json) { process.stdout.write(JSON.stringify(r, null, 2) + '\n'); return; }
        process.stdout.write([
          `pulled overlay ${r.overlayId}`,
          `  from      ${r.reference}`,
          `  file      ${r.file}`,
          `  segments  ${r.segments.total}: ${r.segments.downloaded} downloaded (${formatBytes(r.bytesDownloaded)}), ${r.segments.fromCache} from cache`,
          ...(r.parents ?? []).map((p, i) => `  parent    ${p.overlayId} (chain hop ${i + 1}, ${formatBytes(p.bytesDownloaded)} downloaded) ${p.file}`),
          `  time      ${r.seconds.toFixed(2)} s${r.retries ? `, ${r.retries} retries` : ''}`,
          '',
        ].join('\n'));
      } finally {
        bar.stop();
        c.dispose();
      }
    });

  const registry = program.command('registry').description('OCI registry credentials and published overlays');

  registry.command('login')
    .description(`check and store registry credentials in the Docker credentials file (${dockerConfigPath()})`)
    .argument('<host>', 'HOST[:PORT] of the registry')
    .option('-u, --username <user>', 'user name')
    .option('--password-stdin', 'read the password from stdin')
    .option('--ca <file>', 'PEM CA certificate to trust for the registry')
    .option('--plain-http', 'talk plain HTTP to the registry')
    .action(async (host: string, o: ConnOpts & { username?: string; passwordStdin?: boolean }) => {
      const registryHost = parseReference(`${host.replace(/^oci:\/\//, '').replace(/\/.*$/, '')}/x`).registry;
      const username = o.username ?? (await promptLine('Username: '));
      const password = o.passwordStdin ? await readPasswordFromStdin() : await promptHidden('Password: ');
      if (!username || !password) throw new CloudletError('BadInput', 'a username and a password are needed');
      const creds = new Credentials(username, password);
      const client = new RegistryClient(registryHost, { ...connection(o), credentials: creds, retry: { attempts: 2 } });
      try {
        await client.ping();
      } finally {
        await client.close();
      }
      storeCredentials(registryHost, creds);
      process.stdout.write(`logged in to ${registryHost} as ${username} (stored in ${dockerConfigPath()})\n`);
    });

  registry.command('logout')
    .description('remove stored credentials of a registry')
    .argument('<host>', 'HOST[:PORT] of the registry')
    .action((host: string) => {
      const removed = removeCredentials(host.replace(/^oci:\/\//, '').replace(/\/.*$/, ''));
      process.stdout.write(removed ? `logged out of ${host}\n` : `no stored credentials for ${host}\n`);
    });

  registry.command('published')
    .description('overlays published from this machine')
    .option('--overlay <id>', 'only this overlay (ID or prefix)')
    .option('--json', 'print JSON')
    .action((o: { overlay?: string; json?: boolean }) => {
      const list = listPublications().filter((p) => !o.overlay || p.overlayId.startsWith(o.overlay))
        .map(({ segments: _s, ...p }) => p);
      if (o.json) { process.stdout.write(JSON.stringify(list, null, 2) + '\n'); return; }
      for (const p of list) process.stdout.write(`${p.overlayId.slice(0, 12)}  ${p.reference}  ${p.digestReference}  ${p.publishedAt}\n`);
    });
}

async function promptLine(question: string): Promise<string> {
  const readline = await import('node:readline/promises');
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}
