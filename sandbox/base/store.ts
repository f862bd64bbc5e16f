/**
 * The local base store: bases/<baseId>/ bundles under one store root (CLOUDLET_HOME or a daemon's
 * --data folder). Create, list, show, verify, export to one file, import (every digest checked
 * before the base appears), delete.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { storePaths, type StorePaths } from '../common/paths';
import { noProgress, type ProgressSink } from '../common/progress';
import { createBase, type CreateBaseOptions } from './create';
import { parseManifest, type BaseManifest, type BundleFileName, BUNDLE_FILES } from './manifest';
import { extractMember, readTarIndex, writeTar } from './tarFile';
import { verifyBundleFull, verifyBundleQuick } from './verify';

/** One base bundle on disk. Paths are absolute; files are read-only once the bundle exists. */
export class BaseBundle {
  constructor(readonly dir: string, readonly manifest: BaseManifest) {}
  get id(): string { return this.manifest.baseId; }
  get name(): string { return this.manifest.name; }
  file(name: BundleFileName): string { return path.join(this.dir, name); }
  get disk(): string { return this.file('disk.raw'); }
  get ram(): string { return this.file('ram.raw'); }
  get state(): string { return this.file('state.bin'); }
  get diskDigests(): string { return this.file('disk.digests'); }
  get ramDigests(): string { return this.file('ram.digests'); }
  get kernel(): string | undefined { return this.manifest.files.kernel ? this.file('kernel') : undefined; }
  get initrd(): string | undefined { return this.manifest.files.initrd ? this.file('initrd') : undefined; }
  /** Total bytes of the bundle's files (as the manifest lists them). */
  get bytes(): number { return Object.values(this.manifest.files).reduce((a, f) => a + (f?.bytes ?? 0), 0); }
}

export interface BaseSummary {
  baseId: string; name: string; createdAt: string; cpuModel: string; ramBytes: number; vcpus: number;
  diskBytes: number; bytes: number; ports: number[]; qemuVersion: string;
}

export function summarize(b: BaseBundle): BaseSummary {
  const m = b.manifest;
  return {
    baseId: m.baseId, name: m.name, createdAt: m.createdAt, cpuModel: m.vm.cpuModel, ramBytes: m.vm.ramBytes,
    vcpus: m.vm.vcpus, diskBytes: m.files['disk.raw']!.bytes, bytes: b.bytes, ports: m.ports, qemuVersion: m.qemu.version,
  };
}

export class BaseStore {
  readonly paths: StorePaths;
  constructor(root?: string) { this.paths = storePaths(root); }

  list(): BaseBundle[] {
    if (!fs.existsSync(this.paths.bases)) return [];
    const out: BaseBundle[] = [];
    for (const id of fs.readdirSync(this.paths.bases).sort()) {
      if (!/^[0-9a-f]{64}$/.test(id)) continue;
      try { out.push(this.load(id)); } catch { /* a damaged bundle shows up in `base verify`, not here */ }
    }
    return out;
  }

  /** By full ID, unique ID prefix (>= 6 hex) or unique name. */
  get(ref: string): BaseBundle {
    if (/^[0-9a-f]{64}$/.test(ref) && fs.existsSync(path.join(this.paths.bases, ref))) return this.load(ref);
    const all = fs.existsSync(this.paths.bases) ? fs.readdirSync(this.paths.bases).filter((d) => /^[0-9a-f]{64}$/.test(d)) : [];
    let hits = /^[0-9a-f]{6,64}$/.test(ref) ? all.filter((id) => id.startsWith(ref)) : [];
    if (!hits.length) hits = this.list().filter((b) => b.name === ref).map((b) => b.id);
    if (hits.length === 1) return this.load(hits[0]);
    if (hits.length > 1) throw new CloudletError('BadInput', `'${ref}' matches ${hits.length} bases; give more of the base ID`);
    throw new CloudletError('NotFound', `no base '${ref}' in ${this.paths.bases}`, { hint: 'cloudlet base list' });
  }

  has(baseId: string): boolean { return fs.existsSync(path.join(this.paths.bases, baseId, 'manifest.json')); }

  private load(id: string): BaseBundle {
    const dir = path.join(this.paths.bases, id);
    let text: string;
    try { text = fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'); } catch {
      throw new CloudletError('Corrupt', `base ${id}: manifest.json is missing`);
    }
    const m = parseManifest(text, `base ${id}`);
    if (m.baseId !== id) throw new CloudletError('Corrupt', `base folder ${id} holds base ${m.baseId}`);
    return new BaseBundle(dir, m);
  }

  async create(o: CreateBaseOptions): Promise<BaseBundle> {
    return this.get(await createBase(this.paths, o));
  }

  /** Full check of every file and every chunk. Throws Corrupt naming the file. */
  async verify(ref: string, onProgress: ProgressSink = noProgress): Promise<BaseBundle> {
    const b = this.get(ref);
    await verifyBundleFull(b.dir, b.manifest, `base ${b.id.slice(0, 12)}`, (file, done, total) => onProgress({ phase: 'verify', message: file, done, total }));
    return b;
  }

  /** Cheap check before use (sizes always; full hash of files changed since the last full check). */
  async verifyQuick(ref: string): Promise<BaseBundle> {
    const b = this.get(ref);
    await verifyBundleQuick(b.dir, b.manifest, `base ${b.id.slice(0, 12)}`);
    return b;
  }

  async export(ref: string, outFile: string, onProgress: ProgressSink = noProgress): Promise<{ file: string; bytes: number; baseId: string }> {
    const b = await this.verifyQuick(ref);
    const members = [{ name: 'manifest.json', path: path.join(b.dir, 'manifest.json') }];
    for (const name of BUNDLE_FILES) if (b.manifest.files[name]) members.push({ name, path: b.file(name) });
    const part = `${outFile}.part-${process.pid}`;
    try {
      await writeTar(part, members, (done, total) => onProgress({ phase: 'export', done, total }));
      fs.renameSync(part, outFile);
    } catch (e) { fs.rmSync(part, { force: true }); throw e; }
    return { file: outFile, bytes: fs.statSync(outFile).size, baseId: b.id };
  }

  /** Imports an exported base; nothing appears in bases/ unless every digest matched. */
  async import(file: string, onProgress: ProgressSink = noProgress): Promise<{ bundle: BaseBundle; alreadyPresent: boolean }> {
    if (!fs.existsSync(file)) throw new CloudletError('NotFound', `${file} does not exist`);
    const members = await readTarIndex(file);
    const manifestMember = members.find((m) => m.name === 'manifest.json');
    if (!manifestMember) throw new CloudletError('BadInput', `${file} is not a cloudlet base export (no manifest.json)`);
    const fh = await fs.promises.open(file, 'r');
    const mbuf = Buffer.alloc(manifestMember.size);
    await fh.read(mbuf, 0, mbuf.length, manifestMember.offset);
    await fh.close();
    const m = parseManifest(mbuf.toString('utf8'), path.basename(file));
    if (this.has(m.baseId)) {
      return { bundle: await this.verifyQuick(m.baseId), alreadyPresent: true };
    }
    fs.mkdirSync(this.paths.tmp, { recursive: true });
    const dir = fs.mkdtempSync(path.join(this.paths.tmp, 'import-'));
    try {
      fs.writeFileSync(path.join(dir, 'manifest.json'), mbuf);
      for (const name of Object.keys(m.files) as BundleFileName[]) {
        const mem = members.find((x) => x.name === name);
        if (!mem) throw new CloudletError('Corrupt', `${path.basename(file)}: ${name} is missing from the export`);
        await extractMember(file, mem, path.join(dir, name), (done, total) => onProgress({ phase: 'import', message: name, done, total }));
      }
      await verifyBundleFull(dir, m, path.basename(file), (f, done, total) => onProgress({ phase: 'verify', message: f, done, total }));
      fs.mkdirSync(this.paths.bases, { recursive: true });
      fs.renameSync(dir, path.join(this.paths.bases, m.baseId));
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return { bundle: this.get(m.baseId), alreadyPresent: false };
  }

  /** Deletes a base. Refused while a sandbox uses it, unless force. */
  delete(ref: string, opts: { force?: boolean; inUseBy?: string[] } = {}): string {
    const b = this.get(ref);
    if (opts.inUseBy?.length && !opts.force) {
      throw new CloudletError('Conflict', `base ${b.id.slice(0, 12)} is used by sandbox(es) ${opts.inUseBy.join(', ')}`, { hint: 'delete those sandboxes first, or use --force' });
    }
    // Rename first so a half-deleted bundle never looks like a base.
    fs.mkdirSync(this.paths.tmp, { recursive: true });
    const trash = path.join(this.paths.tmp, `deleting-${b.id}-${process.pid}`);
    fs.renameSync(b.dir, trash);
    fs.rmSync(trash, { recursive: true, force: true });
    return b.id;
  }
}
