/**
 * Glance images in SQLite, their data under <data>/images/<id>. Uploads stream into tmp/ and are
 * renamed into place only when complete, so a crash never leaves a half file looking like an image.
 * Projects see their own images and public ones; admins see all.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { pipeline } from 'stream/promises';
import { Transform, type Readable } from 'stream';
import type BetterSqlite3 from 'better-sqlite3';
import type { AuthContext } from './context';
import { CloudletError } from '../common/errors';
import { onDiskFullAsync } from '../common/hostErrors';
import { storePaths } from '../common/paths';
import type { CloudletImageProperties, Image } from '../client/types';

export interface ImageRow {
  id: string;
  name: string;
  owner: string;
  visibility: Image['visibility'];
  status: Image['status'];
  size: number | null;
  checksum: string | null;
  os_hash_value: string | null;
  disk_format: string | null;
  container_format: string | null;
  min_disk: number;
  min_ram: number;
  protected: number;
  properties: Record<string, string>;
  tags: string[];
  created_at: string;
  updated_at: string;
}

export function migrateImages(db: BetterSqlite3.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, visibility TEXT NOT NULL,
    status TEXT NOT NULL, size INTEGER, checksum TEXT, os_hash_value TEXT, disk_format TEXT, container_format TEXT,
    min_disk INTEGER NOT NULL DEFAULT 0, min_ram INTEGER NOT NULL DEFAULT 0, protected INTEGER NOT NULL DEFAULT 0,
    properties TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`);
  const cols = (db.prepare('PRAGMA table_info(images)').all() as { name: string }[]).map((c) => c.name);
  if (!cols.includes('tags')) db.exec(`ALTER TABLE images ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'`);
}

/** Glance's limits on image tags (image_tag_quota, the schema's maxLength). */
export const MAX_TAGS = 128;
export const MAX_TAG_LENGTH = 255;

/** Fields of an image a client may set; anything else not reserved is a custom property. */
const CORE = new Set(['name', 'visibility', 'disk_format', 'container_format', 'min_disk', 'min_ram', 'protected']);
const READ_ONLY = new Set(['id', 'owner', 'status', 'size', 'virtual_size', 'checksum', 'os_hash_algo', 'os_hash_value',
  'created_at', 'updated_at', 'self', 'file', 'schema', 'direct_url', 'locations', 'tags', 'os_hidden']);

/**
 * A field's value as given, or BadInput: nothing is converted (an array is no visibility, "abc" no
 * size). The API's schema refuses the same first; this keeps every other caller honest too.
 */
function checked(k: string, v: unknown): unknown {
  const ok = CORE.has(k)
    ? k === 'min_disk' || k === 'min_ram' ? Number.isSafeInteger(v) && (v as number) >= 0
      : k === 'protected' ? typeof v === 'boolean'
      : k === 'visibility' ? typeof v === 'string' && ['public', 'private', 'shared', 'community'].includes(v)
      : v === null || typeof v === 'string'
    : typeof v === 'string';
  if (!ok) throw new CloudletError('BadInput', `Invalid value for image field ${k}: ${JSON.stringify(v)?.slice(0, 80)}`);
  return v;
}

export class ImageStore {
  readonly dir: string;
  private tmp: string;
  constructor(private db: BetterSqlite3.Database, dataDir: string) {
    this.dir = path.join(dataDir, 'images');
    this.tmp = storePaths(dataDir).tmp;
    fs.mkdirSync(this.dir, { recursive: true });
    fs.mkdirSync(this.tmp, { recursive: true });
  }

  /** After a crash: uploads that were in progress go back to queued and their temp files go. */
  recover(): void {
    this.db.prepare("UPDATE images SET status = 'queued', updated_at = ? WHERE status = 'saving'").run(now());
    this.db.prepare("UPDATE images SET status = 'killed', updated_at = ? WHERE status = 'importing'").run(now());
    for (const f of fs.readdirSync(this.tmp)) if (f.startsWith('image-')) fs.rmSync(path.join(this.tmp, f), { force: true });
  }

  /** Where an image's data lives; only UUID ids, so no id can name a file outside the images folder. */
  filePath(id: string): string {
    const file = path.resolve(this.dir, id);
    if (!isImageId(id) || path.dirname(file) !== path.resolve(this.dir)) throw new CloudletError('BadInput', `Invalid image ID ${JSON.stringify(id)}: not a UUID`);
    return file;
  }

  create(owner: string, fields: Record<string, unknown>, id: string = crypto.randomUUID()): ImageRow {
    const props: Record<string, string> = {};
    for (const [k, v] of Object.entries(fields)) {
      if (CORE.has(k) || k === 'id' || k === 'tags' || v === undefined) continue;
      if (READ_ONLY.has(k)) throw new CloudletError('Forbidden', `Attribute '${k}' is read-only.`);
      props[k] = checked(k, v) as string;
    }
    for (const k of CORE) if (fields[k] !== undefined) checked(k, fields[k]);
    if (fields.id !== undefined) {
      if (typeof fields.id !== 'string' || !isImageId(fields.id)) throw new CloudletError('BadInput', `Invalid image ID ${JSON.stringify(fields.id)}: it must be a UUID`);
      id = fields.id;
    }
    if (this.getRow(id)) throw new CloudletError('Conflict', `Image with identifier ${id} already exists!`);
    const visibility = (fields.visibility as string) ?? 'shared';
    if (!['public', 'private', 'shared', 'community'].includes(visibility)) throw new CloudletError('BadInput', `Invalid visibility value: ${visibility}`);
    const t = now();
    this.db.prepare(`INSERT INTO images (id, name, owner, visibility, status, disk_format, container_format, min_disk, min_ram, protected, properties, created_at, updated_at)
      VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)`).run(id, String(fields.name ?? ''), owner, visibility,
      (fields.disk_format as string) ?? null, (fields.container_format as string) ?? null, Number(fields.min_disk ?? 0), Number(fields.min_ram ?? 0),
      fields.protected ? 1 : 0, JSON.stringify(props), t, t);
    if (fields.tags !== undefined) this.setTags(id, checkTags(fields.tags));
    return this.getRow(id)!;
  }

  getRow(id: string): ImageRow | undefined {
    const r = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as any;
    return r ? { ...r, properties: JSON.parse(r.properties), tags: JSON.parse(r.tags) } : undefined;
  }

  /** An image the caller may see, else 404 (not 403: others' images do not exist for them). */
  get(a: AuthContext, id: string): ImageRow {
    const r = this.getRow(id);
    if (!r || !canSee(a, r)) throw new CloudletError('NotFound', `No image found with ID ${id}`);
    return r;
  }

  /** Same, and the caller must own it (or be admin) to change it. */
  getOwned(a: AuthContext, id: string): ImageRow {
    const r = this.get(a, id);
    if (r.owner !== a.projectId && !a.isAdmin) throw new CloudletError('Forbidden', `You are not permitted to modify image ${id}`);
    return r;
  }

  list(a: AuthContext | undefined): ImageRow[] {
    const rows = (this.db.prepare('SELECT * FROM images ORDER BY created_at DESC, id').all() as any[]).map((r) => ({ ...r, properties: JSON.parse(r.properties), tags: JSON.parse(r.tags) } as ImageRow));
    return a ? rows.filter((r) => canSee(a, r)) : rows;
  }

  /** Images holding a base with this base ID (what a cloudlet advertises). */
  basesWithId(baseId: string): ImageRow[] {
    return this.list(undefined).filter((r) => r.properties.cloudlet_type === 'cloudlet_base_disk' && r.properties.base_sha256_uuid === baseId && r.status === 'active');
  }

  update(id: string, changes: { set?: Record<string, unknown>; remove?: string[] }): ImageRow {
    const r = this.getRow(id)!;
    const props = { ...r.properties };
    const core: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(changes.set ?? {})) {
      if (READ_ONLY.has(k)) throw new CloudletError('Forbidden', `Attribute '${k}' is read-only.`);
      if (CORE.has(k)) core[k] = checked(k, v); else props[k] = checked(k, v) as string;
    }
    for (const k of changes.remove ?? []) {
      if (CORE.has(k) || READ_ONLY.has(k)) throw new CloudletError('Forbidden', `Attribute '${k}' is read-only.`);
      if (!(k in props)) throw new CloudletError('Conflict', `Property ${k} does not exist.`);
      delete props[k];
    }
    const merged = { name: r.name, visibility: r.visibility, disk_format: r.disk_format, container_format: r.container_format, min_disk: r.min_disk, min_ram: r.min_ram, protected: r.protected, ...core };
    this.db.prepare(`UPDATE images SET name = ?, visibility = ?, disk_format = ?, container_format = ?, min_disk = ?, min_ram = ?, protected = ?, properties = ?, updated_at = ? WHERE id = ?`)
      .run(String(merged.name), String(merged.visibility), merged.disk_format ?? null, merged.container_format ?? null, Number(merged.min_disk), Number(merged.min_ram),
        merged.protected ? 1 : 0, JSON.stringify(props), now(), id);
    return this.getRow(id)!;
  }

  /** Replaces an image's tags (already checked with checkTags). */
  setTags(id: string, tags: string[]): ImageRow {
    this.db.prepare('UPDATE images SET tags = ?, updated_at = ? WHERE id = ?').run(JSON.stringify(tags), now(), id);
    return this.getRow(id)!;
  }

  /** Adds one tag (Glance: adding a tag it has is no change); 413 past MAX_TAGS. */
  addTag(id: string, tag: string): ImageRow {
    const r = this.getRow(id)!;
    return r.tags.includes(tag) ? r : this.setTags(id, checkTags([...r.tags, tag]));
  }

  removeTag(id: string, tag: string): ImageRow {
    const r = this.getRow(id)!;
    if (!r.tags.includes(tag)) throw new CloudletError('NotFound', `Tag ${tag} not found.`);
    return this.setTags(id, r.tags.filter((t) => t !== tag));
  }

  setStatus(id: string, status: ImageRow['status']): void {
    this.db.prepare('UPDATE images SET status = ?, updated_at = ? WHERE id = ?').run(status, now(), id);
  }

  /**
   * Store data for an image from a stream, at most `maxBytes`. The image is `saving` meanwhile,
   * `active` after, back to `queued` when the upload fails.
   */
  async upload(id: string, data: Readable, maxBytes: number, check?: (file: string) => Promise<Record<string, string> | void>): Promise<ImageRow> {
    const r = this.getRow(id)!;
    if (r.status !== 'queued') throw new CloudletError('Conflict', `Image status transition from ${r.status} to saving is not allowed`);
    this.setStatus(id, 'saving');
    const tmp = path.join(this.tmp, `image-${id}-${process.pid}`);
    const md5 = crypto.createHash('md5');
    const sha512 = crypto.createHash('sha512');
    let size = 0;
    try {
      await onDiskFullAsync(tmp, 'image upload: writing the image data', pipeline(data, new Transform({
        transform(chunk: Buffer, _enc, cb) {
          size += chunk.length;
          if (size > maxBytes) { cb(new CloudletError('BadInput', `image data over the limit of ${maxBytes} bytes`, { status: 413 })); return; }
          md5.update(chunk); sha512.update(chunk); cb(null, chunk);
        },
      }), fs.createWriteStream(tmp)));
      const props = check ? await check(tmp) : undefined;
      fs.renameSync(tmp, this.filePath(id));
      this.db.prepare("UPDATE images SET status = 'active', size = ?, checksum = ?, os_hash_value = ?, updated_at = ? WHERE id = ?")
        .run(size, md5.digest('hex'), sha512.digest('hex'), now(), id);
      if (props) this.update(id, { set: props });
      return this.getRow(id)!;
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      this.setStatus(id, 'queued');
      throw e;
    }
  }

  /** Register a file already complete on disk (an overlay this daemon made) as the image's data. */
  adoptFile(id: string, file: string): ImageRow {
    // Hashed in chunks: an overlay may be larger than one Buffer can hold (~2 GiB).
    const md5h = crypto.createHash('md5'), sha512h = crypto.createHash('sha512');
    const chunk = Buffer.alloc(8 << 20);
    let size = 0;
    const fd = fs.openSync(file, 'r');
    try {
      for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0; size += n) {
        md5h.update(chunk.subarray(0, n));
        sha512h.update(chunk.subarray(0, n));
      }
    } finally { fs.closeSync(fd); }
    const md5 = md5h.digest('hex'), sha512 = sha512h.digest('hex');
    fs.renameSync(file, this.filePath(id));
    this.db.prepare("UPDATE images SET status = 'active', size = ?, checksum = ?, os_hash_value = ?, updated_at = ? WHERE id = ?").run(size, md5, sha512, now(), id);
    return this.getRow(id)!;
  }

  delete(id: string): void {
    this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
    fs.rmSync(this.filePath(id), { force: true });
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Image ids are UUIDs, as in Glance; a client-chosen id must be one too. */
export function isImageId(id: string): boolean { return UUID.test(id); }

export function canSee(a: AuthContext, r: ImageRow): boolean {
  return a.isAdmin || r.owner === a.projectId || r.visibility === 'public' || r.visibility === 'community';
}

function now(): string { return new Date().toISOString(); }

/** Tags as Glance takes them: strings of 1-255 characters, no '/', at most MAX_TAGS, duplicates dropped. */
export function checkTags(v: unknown): string[] {
  if (!Array.isArray(v)) throw new CloudletError('BadInput', 'tags must be a list of strings');
  const tags = [...new Set(v)];
  for (const t of tags) {
    if (typeof t !== 'string' || !t || t.length > MAX_TAG_LENGTH || t.includes('/')) {
      throw new CloudletError('BadInput', `Invalid tag ${JSON.stringify(t)}: a tag is 1-${MAX_TAG_LENGTH} characters without '/'`);
    }
  }
  if (tags.length > MAX_TAGS) throw new CloudletError('BadInput', `Maximum number of tags exceeded: at most ${MAX_TAGS}`, { status: 413 });
  return tags;
}

/** Glance v2 JSON of an image: core fields plus custom properties at the top level. */
export function imageView(r: ImageRow): Image {
  return {
    ...(r.properties as CloudletImageProperties),
    id: r.id, name: r.name, status: r.status, visibility: r.visibility, protected: !!r.protected, os_hidden: false,
    size: r.size, virtual_size: null, checksum: r.checksum, os_hash_algo: r.os_hash_value ? 'sha512' : null, os_hash_value: r.os_hash_value,
    disk_format: r.disk_format, container_format: r.container_format, min_disk: r.min_disk, min_ram: r.min_ram,
    owner: r.owner, created_at: r.created_at.replace(/\.\d+Z$/, 'Z'), updated_at: r.updated_at.replace(/\.\d+Z$/, 'Z'), tags: r.tags ?? [],
    self: `/v2/images/${r.id}`, file: `/v2/images/${r.id}/file`, schema: '/v2/schemas/image',
  };
}
