/**
 * The local sandbox daemon: a `cloudlet serve` on loopback run by the system Node (never inside the
 * extension host: the daemon uses native modules). Found as: setting -> PATH -> a message with the
 * install hint. Reused when one already answers on the configured address; stopped on deactivate
 * only when this extension started it.
 */
import * as cp from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CloudletError } from '../sandbox/client';
import type { MissingTool } from './state/install';

export interface LocalDaemonSettings {
  nodePath: string;       // '' = node on PATH
  cliPath: string;        // '' = cloudlet on PATH
  nodeArgs: string[];     // before the CLI, e.g. ['--import', 'tsx'] for a source checkout
  listen: string;         // e.g. 127.0.0.1:8774
  dataDir: string;        // '' = ~/.local/share/cloudlet
  extraArgs: string[];
}

export const INSTALL_HINT = 'Install Node.js 20 or newer and the Cloudlet Toolkit CLI from its tarball: npm install -g --allow-scripts=better-sqlite3,zstd-napi ./cloudlet-toolkit-X.Y.Z.tgz; '
  + 'or run "Cloudlet: Locate CLI..." to pick an installed cloudlet. "Cloudlet: Show Install Steps" has the details.';

/** A MissingTool error that says which tool is missing (`missing`), for the views and the status bar. */
export class MissingToolError extends CloudletError {
  constructor(readonly missing: MissingTool, message: string) {
    super('MissingTool', message, { hint: INSTALL_HINT });
    this.name = 'MissingToolError';
  }
}

export function defaultDataDir(): string {
  return process.env.CLOUDLET_HOME || path.join(os.homedir(), '.local', 'share', 'cloudlet');
}

/** Finds an executable file on PATH (no shell). */
export function which(name: string, envPath = process.env.PATH ?? ''): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try { fs.accessSync(p, fs.constants.X_OK); if (fs.statSync(p).isFile()) return p; } catch { /* next */ }
  }
  return undefined;
}

/** Setting -> PATH -> error with the install hint. */
export function resolveTools(s: LocalDaemonSettings, envPath?: string): { node: string; cli: string } {
  const node = s.nodePath || which('node', envPath);
  if (!node || !fs.existsSync(node)) {
    throw s.nodePath ? new MissingToolError('nodePath', `cloudlet.nodePath points to ${s.nodePath}, which does not exist`)
      : new MissingToolError('node', 'No Node.js found on PATH to run the local cloudlet daemon');
  }
  let cli = s.cliPath || which('cloudlet', envPath);
  if (!cli || !fs.existsSync(cli)) {
    throw s.cliPath ? new MissingToolError('cliPath', `cloudlet.cliPath points to ${s.cliPath}, which does not exist`)
      : new MissingToolError('cli', 'The cloudlet CLI is not on PATH');
  }
  cli = fs.realpathSync(cli);
  return { node, cli };
}

export function daemonUrl(listen: string): string {
  const i = listen.lastIndexOf(':');
  return `http://${listen.slice(0, i)}:${listen.slice(i + 1)}`;
}

/** Does a cloudlet daemon answer there? (GET / -> {cloudlet: true}) */
export async function probe(url: string, timeoutMs = 1500): Promise<boolean> {
  try {
    const r = await fetch(url + '/', { signal: AbortSignal.timeout(timeoutMs) });
    if (!r.ok) return false;
    const j = (await r.json()) as { cloudlet?: boolean };
    return j.cloudlet === true;
  } catch {
    return false;
  }
}

export class LocalDaemon {
  private proc: cp.ChildProcess | undefined;
  private starting: Promise<string> | undefined;
  startedByUs = false;
  url: string;
  lastOutput = '';

  constructor(private settings: () => LocalDaemonSettings, private log: (msg: string) => void) {
    this.url = daemonUrl(settings().listen);
  }

  get dataDir(): string { return this.settings().dataDir || defaultDataDir(); }

  /** The local admin password the daemon generated on first start (<data>/admin.password). */
  readPassword(): string | undefined {
    try { return fs.readFileSync(path.join(this.dataDir, 'admin.password'), 'utf8').trim(); } catch { return undefined; }
  }

  /** Returns the URL of a running local daemon, starting one if needed. */
  ensure(autoStart: boolean): Promise<string> {
    this.starting ??= this.doEnsure(autoStart).finally(() => { this.starting = undefined; });
    return this.starting;
  }

  private async doEnsure(autoStart: boolean): Promise<string> {
    const s = this.settings();
    this.url = daemonUrl(s.listen);
    if (this.proc && this.proc.exitCode === null && await probe(this.url)) return this.url;
    if (await probe(this.url)) {
      this.log(`local daemon: reusing the one answering at ${this.url}`);
      return this.url;
    }
    if (!autoStart) throw new CloudletError('Unavailable', `No cloudlet daemon answers at ${this.url}`, { hint: 'Start it with `cloudlet serve` or enable cloudlet.localDaemon.autoStart' });
    const { node, cli } = resolveTools(s);
    fs.mkdirSync(this.dataDir, { recursive: true });
    const args = [...s.nodeArgs, cli, 'serve', '--listen', s.listen, '--data', this.dataDir, ...s.extraArgs];
    this.log(`local daemon: starting ${node} ${args.join(' ')}`);
    const proc = cp.spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: false, env: { ...process.env, CLOUDLET_CLI_MAIN: '1' } });
    this.proc = proc;
    this.startedByUs = true;
    this.lastOutput = '';
    const keep = (b: Buffer) => { this.lastOutput = (this.lastOutput + b.toString()).slice(-4000); };
    proc.stderr!.on('data', keep);
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new CloudletError('Unavailable', `the local daemon did not start listening: ${this.lastOutput.trim().split('\n').slice(-3).join(' / ')}`)), 60000);
      proc.stdout!.on('data', (b: Buffer) => {
        keep(b);
        buf += b.toString();
        const m = buf.match(/\{"listening":"([^"]+)"/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      proc.once('error', (e) => { clearTimeout(timer); reject(new CloudletError('MissingTool', `could not run ${node}: ${e.message}`, { hint: INSTALL_HINT })); });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new CloudletError('Unavailable', `the local daemon exited (code ${code}) before listening: ${this.lastOutput.trim().split('\n').slice(-3).join(' / ')}`));
      });
    });
    // If the extension host goes away without deactivate (killed, crashed), the daemon goes with it.
    const onHostExit = () => { try { proc.kill('SIGTERM'); } catch { /* gone */ } };
    process.once('exit', onHostExit);
    proc.once('exit', (code, sig) => {
      process.off('exit', onHostExit);
      this.log(`local daemon: exited (${code ?? sig})`);
      if (this.proc === proc) { this.proc = undefined; this.startedByUs = false; }
    });
    this.url = url.replace(/\/$/, '');
    this.log(`local daemon: listening on ${this.url} (pid ${proc.pid}, data ${this.dataDir})`);
    return this.url;
  }

  /** Stops the daemon only if this extension started it. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || !this.startedByUs || p.exitCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    this.proc = undefined;
    this.startedByUs = false;
  }
}
