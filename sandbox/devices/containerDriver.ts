/**
 * Everything the daemon does on a device's Docker engine, through dockerode: ping, pull, create,
 * start, stop, logs, exec, remove, list by label. Containers get host networking (or none):
 * never the default bridge. Labels tie engine containers back to their Zun id, reservation and
 * lease, so containers left behind by a crash can be found and swept.
 */
import Docker from 'dockerode';
import { CloudletError } from '../common/errors';
import { parseEngineEndpoint } from './engineEndpoint';

export const LABEL_CONTAINER = 'org.cloudlet.container';
export const LABEL_RESERVATION = 'org.cloudlet.reservation';
export const LABEL_LEASE = 'org.cloudlet.lease';

export interface RunSpec {
  name: string;
  image: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  workdir?: string;
  exposedPorts?: Record<string, Record<string, never>>;
  network: 'host' | 'none';
  labels: Record<string, string>;
}

export interface EngineState { status: 'Created' | 'Running' | 'Stopped' | 'Paused' | 'Restarting' | 'Dead' | 'Unknown'; exitCode?: number; error?: string }

/** Docker's multiplexed stdout/stderr stream (non-TTY) -> text. 8-byte frame headers. */
export function demuxDockerStream(buf: Buffer): string {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length && (buf[i] === 0 || buf[i] === 1 || buf[i] === 2) && buf[i + 1] === 0 && buf[i + 2] === 0 && buf[i + 3] === 0) {
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  if (i < buf.length) parts.push(buf.subarray(i));  // not multiplexed (TTY) or a trailing fragment
  return Buffer.concat(parts).toString('utf8');
}

function engineState(s: { Status?: string; ExitCode?: number; Error?: string }): EngineState {
  const map: Record<string, EngineState['status']> = {
    created: 'Created', running: 'Running', exited: 'Stopped', paused: 'Paused', restarting: 'Restarting', dead: 'Dead', removing: 'Stopped',
  };
  return { status: map[s.Status ?? ''] ?? 'Unknown', exitCode: s.ExitCode, error: s.Error || undefined };
}

function notFound(e: unknown): boolean {
  return (e as { statusCode?: number }).statusCode === 404;
}

/** One device engine. `deviceName` is only for messages: errors always say which device. */
export class ContainerDriver {
  readonly docker: Docker;
  private readonly probe: Docker;

  constructor(endpoint: string, readonly deviceName: string, timeoutMs = 120_000, pingTimeoutMs = 2000) {
    const where = parseEngineEndpoint(endpoint);
    this.docker = new Docker({ ...where, timeout: timeoutMs } as Docker.DockerOptions);
    this.probe = new Docker({ ...where, timeout: pingTimeoutMs } as Docker.DockerOptions);
  }

  /** Engine errors keep their meaning; no answer at all means the device is unreachable (503). */
  private unreachable(e: unknown, what: string): CloudletError {
    if (e instanceof CloudletError) return e;
    const err = e as { statusCode?: number; json?: { message?: string }; message?: string };
    const msg = err.json?.message ?? err.message ?? String(e);
    if (err.statusCode) {
      const status = err.statusCode === 404 ? 'NotFound' : err.statusCode === 409 ? 'Conflict' : err.statusCode < 500 ? 'BadInput' : 'Internal';
      return new CloudletError(status, `device ${this.deviceName}: ${what}: ${msg}`);
    }
    return new CloudletError('Unavailable', `device ${this.deviceName} is unreachable: ${what} failed: ${msg}`);
  }

  /** Resolves when the engine answers in time; throws Unavailable naming the device. */
  async ping(): Promise<void> {
    try {
      await this.probe.ping();
    } catch (e) {
      throw new CloudletError('Unavailable', `device ${this.deviceName} is unreachable: engine ping failed: ${(e as Error).message}`);
    }
  }

  /** Pulls unless present (policy ifnotpresent), always, or never. */
  async ensureImage(image: string, policy: 'always' | 'ifnotpresent' | 'never' = 'ifnotpresent'): Promise<void> {
    if (policy !== 'always') {
      try {
        await this.docker.getImage(image).inspect();
        return;
      } catch (e) {
        if (!notFound(e)) throw this.unreachable(e, `inspect image ${image}`);
        if (policy === 'never') throw new CloudletError('BadInput', `image ${image} is not on device ${this.deviceName} and image_pull_policy is "never"`);
      }
    }
    try {
      const stream = await this.docker.pull(image);
      await new Promise<void>((resolve, reject) => {
        this.docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
          const failed = err ?? out.find((o) => o.error);
          if (failed) reject(new Error(err ? err.message : (failed as { error: string }).error)); else resolve();
        });
      });
    } catch (e) {
      const err = e as { statusCode?: number; json?: { message?: string }; message: string };
      // A pull request the engine never answered: the device is down. Anything else is the image's fault.
      if (err.statusCode === undefined && (e as NodeJS.ErrnoException).code !== undefined) throw this.unreachable(e, `pull ${image}`);
      throw new CloudletError('BadInput', `device ${this.deviceName} could not pull ${image}: ${err.json?.message ?? err.message}`);
    }
  }

  async create(spec: RunSpec): Promise<string> {
    try {
      const c = await this.docker.createContainer({
        name: spec.name,
        Image: spec.image,
        Cmd: spec.command,
        Entrypoint: spec.entrypoint,
        Env: Object.entries(spec.environment ?? {}).map(([k, v]) => `${k}=${v}`),
        WorkingDir: spec.workdir,
        ExposedPorts: spec.exposedPorts,
        Labels: spec.labels,
        HostConfig: { NetworkMode: spec.network, RestartPolicy: { Name: 'no' } },
      });
      return c.id;
    } catch (e) {
      throw this.unreachable(e, `create container from ${spec.image}`);
    }
  }

  async start(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 304) return;  // already running
      throw this.unreachable(e, 'start container');
    }
  }

  async stop(id: string, timeoutS = 5): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: timeoutS });
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 304) return;  // already stopped
      throw this.unreachable(e, 'stop container');
    }
  }

  /** Stops (briefly) and removes; a container that is already gone counts as removed. */
  async remove(id: string, stopFirst = true): Promise<void> {
    const c = this.docker.getContainer(id);
    try {
      if (stopFirst) await c.stop({ t: 2 }).catch((e: { statusCode?: number }) => { if (e.statusCode !== 304 && e.statusCode !== 404) throw e; });
      await c.remove({ force: true, v: true });
    } catch (e) {
      if (notFound(e)) return;
      throw this.unreachable(e, 'remove container');
    }
  }

  async state(id: string): Promise<EngineState> {
    try {
      const info = await this.docker.getContainer(id).inspect();
      return engineState(info.State as { Status?: string; ExitCode?: number; Error?: string });
    } catch (e) {
      if (notFound(e)) return { status: 'Dead', error: 'the container is gone from the device' };
      throw this.unreachable(e, 'inspect container');
    }
  }

  async logs(id: string, o: { stdout?: boolean; stderr?: boolean; tail?: number; timestamps?: boolean; since?: number } = {}): Promise<string> {
    try {
      const buf = await this.docker.getContainer(id).logs({
        follow: false, stdout: o.stdout ?? true, stderr: o.stderr ?? true, timestamps: o.timestamps ?? false,
        ...(o.tail !== undefined ? { tail: o.tail } : {}), ...(o.since !== undefined ? { since: o.since } : {}),
      });
      return demuxDockerStream(Buffer.isBuffer(buf) ? buf : Buffer.from(buf as unknown as string));
    } catch (e) {
      throw this.unreachable(e, 'read logs');
    }
  }

  /** Runs a command in the container and waits for it: output (stdout+stderr) and exit code. */
  async exec(id: string, cmd: string[], timeoutMs = 60_000): Promise<{ output: string; exitCode: number | null }> {
    try {
      const ex = await this.docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
      const stream = await ex.start({ hijack: true, stdin: false });
      const chunks: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => { stream.destroy(); reject(new CloudletError('Timeout', `device ${this.deviceName}: command did not finish in ${timeoutMs / 1000} s`)); }, timeoutMs);
        stream.on('data', (b: Buffer) => chunks.push(b));
        stream.on('end', () => { clearTimeout(t); resolve(); });
        stream.on('close', () => { clearTimeout(t); resolve(); });
        stream.on('error', (e: Error) => { clearTimeout(t); reject(e); });
      });
      const info = await ex.inspect();
      return { output: demuxDockerStream(Buffer.concat(chunks)), exitCode: info.ExitCode ?? null };
    } catch (e) {
      throw this.unreachable(e, 'execute command');
    }
  }

  /** Containers on this engine carrying `label` (=value when given), running or not. */
  async listByLabel(label: string, value?: string): Promise<{ id: string; labels: Record<string, string> }[]> {
    try {
      const list = await this.docker.listContainers({ all: true, filters: { label: [value === undefined ? label : `${label}=${value}`] } });
      return list.map((c) => ({ id: c.Id, labels: c.Labels ?? {} }));
    } catch (e) {
      throw this.unreachable(e, 'list containers');
    }
  }
}
