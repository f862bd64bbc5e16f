/**
 * What a base is made from, in one place for the CLI, the daemon, the tests and the benchmarks:
 *   test-guest  the tiny busybox guest (128 MiB, port 80): fast, for tests and first steps
 *   debian      a Debian suite built from Debian packages (1 GiB), guest agent as a systemd unit
 *   image       a disk image (qcow2, raw, vmdk): firmware boot through its own boot loader, and a
 *               cloud-init NoCloud seed that installs the agent when the image has cloud-init
 *   disk        a raw disk (and optionally kernel + initrd) the caller prepared, booted as given
 * Each resolves to CreateBaseOptions with its defaults; the caller's values win.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import type { ProgressSink } from '../common/progress';
import { buildDebianGuest, type DebianBuildOptions } from '../guest/debian';
import { buildTestGuest } from '../guest/build';
import { convertToRaw, inspectImage } from '../guest/diskImage';
import { hostnameFrom, type NoCloudOptions } from '../guest/noCloud';
import type { BaseBundle, BaseStore } from './store';
import type { CreateBaseOptions } from './create';

export type BaseSource =
  | { kind: 'test-guest' }
  | { kind: 'debian'; suite: string; packages?: string[]; diskBytes?: number }
  | { kind: 'image'; file: string; diskBytes?: number; hostname?: string; user?: string; sshKey?: string }
  | { kind: 'disk'; disk: string; kernel?: string; initrd?: string; append?: string };

/** What every source shares: name, VM shape, readiness; unset values take the source's defaults. */
export interface BaseCommon {
  name: string;
  ramMiB?: number;
  vcpus?: number;
  cpuModel?: string;
  ports?: number[];
  readiness?: { consoleMarker?: string; agent?: boolean; timeoutMs?: number };
  onProgress?: ProgressSink;
  signal?: AbortSignal;
  /** Where built guests are cached (default: the checkout's .cache). */
  guestCache?: { testGuest?: string; debian?: string };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Refuses a base name that is not letters, digits, '.', '_' and '-' (at most 64). */
export function checkBaseName(name: string): void {
  if (!NAME.test(name)) throw new CloudletError('BadInput', `base name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-', at most 64`);
}

/** Sizes as people write them: 4G, 512M, 4GiB, 1.5G, or bytes. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new CloudletError('BadInput', `${JSON.stringify(text)} is not a size (e.g. 4G, 512M)`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new CloudletError('BadInput', `${JSON.stringify(text)} is not a usable size`);
  return Math.ceil(bytes / (1024 * 1024)) * 1024 * 1024; // whole MiB
}

/** Turns a source into the options of BaseStore.create (building or converting what it needs). */
export async function resolveSource(store: BaseStore, src: BaseSource, c: BaseCommon): Promise<CreateBaseOptions> {
  checkBaseName(c.name);
  const common = {
    name: c.name, vcpus: c.vcpus, cpuModel: c.cpuModel, onProgress: c.onProgress, signal: c.signal,
  };
  const say = (message: string) => c.onProgress?.({ phase: 'guest', message });
  switch (src.kind) {
    case 'test-guest': {
      const g = await buildTestGuest({ cacheDir: c.guestCache?.testGuest, log: say });
      return {
        ...common, disk: g.disk, kernel: g.kernel, initrd: g.initrd, append: g.append,
        ramMiB: c.ramMiB ?? 128, ports: c.ports ?? [80],
        readiness: { consoleMarker: g.readyMarker, agent: true, ...c.readiness },
        origin: { kind: 'test-guest', key: g.key, kernel: g.kernelRelease },
      };
    }
    case 'debian': {
      const o: DebianBuildOptions = { cacheDir: c.guestCache?.debian, onProgress: c.onProgress, signal: c.signal };
      const g = await buildDebianGuest({ suite: src.suite, packages: src.packages, diskBytes: src.diskBytes }, o);
      return {
        ...common, disk: g.disk!, kernel: g.kernel, initrd: g.initrd, append: g.append,
        ramMiB: c.ramMiB ?? 1024, ports: c.ports ?? [],
        readiness: { agent: true, timeoutMs: 900_000, ...c.readiness },
        origin: { kind: 'debian', suite: g.suite, packages: g.packages, key: g.key },
      };
    }
    case 'image': {
      const img = await inspectImage(src.file, c.signal);
      fs.mkdirSync(store.paths.tmp, { recursive: true });
      const raw = path.join(store.paths.tmp, `image-${process.pid}-${Date.now()}.raw`);
      c.onProgress?.({ phase: 'convert', message: `${path.basename(img.file)} (${img.format}) to a raw disk` });
      try {
        await convertToRaw(img, raw, { diskBytes: src.diskBytes, signal: c.signal, onProgress: (done, total) => c.onProgress?.({ phase: 'convert', done, total }) });
      } catch (e) { fs.rmSync(raw, { force: true }); throw e; }
      const agent = c.readiness?.agent ?? true;
      const noCloud: NoCloudOptions = { hostname: src.hostname ?? hostnameFrom(c.name), user: src.user, sshKey: src.sshKey, agent };
      return {
        ...common, disk: raw, moveDisk: true, noCloud,
        ramMiB: c.ramMiB ?? 1024, ports: c.ports ?? [],
        readiness: { agent, timeoutMs: 900_000, ...c.readiness },
        origin: { kind: 'image', file: path.basename(img.file), format: img.format, virtualBytes: img.virtualBytes },
      };
    }
    case 'disk':
      return {
        ...common, disk: src.disk, kernel: src.kernel, initrd: src.initrd, append: src.append,
        ramMiB: c.ramMiB, ports: c.ports, readiness: c.readiness, origin: { kind: 'disk', file: path.basename(src.disk) },
      };
    default:
      throw new CloudletError('BadInput', `unknown base source ${JSON.stringify((src as { kind?: unknown }).kind)}`);
  }
}

/** Builds what the source needs and creates the base: the one path of `base create` everywhere. */
export async function createBaseFrom(store: BaseStore, src: BaseSource, c: BaseCommon): Promise<BaseBundle> {
  const o = await resolveSource(store, src, c);
  try {
    return await store.create(o);
  } finally {
    if (o.moveDisk) fs.rmSync(o.disk, { force: true }); // moved into the bundle, or left by a failure
  }
}
