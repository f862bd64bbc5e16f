/**
 * Where overlays were published from this machine: <store>/registry/published.json. Two uses: the
 * extension shows an overlay's published references (and offers them for synthesis), and a publish
 * to another repository of the same registry can mount segments from a repository known to hold them.
 */
import * as fs from 'fs';
import * as path from 'path';
import { storePaths } from '../common/paths';

export interface Publication {
  reference: string;        // HOST/REPO:TAG
  digestReference: string;  // HOST/REPO@sha256:... (immutable)
  registry: string;
  repository: string;
  tag?: string;
  manifestDigest: string;
  overlayId: string;
  baseId: string;
  segments: string[];       // segment digests, for cross-repo mounts
  publishedAt: string;
}

export function publicationsFile(root?: string): string {
  return path.join(storePaths(root).root, 'registry', 'published.json');
}

export function listPublications(root?: string): Publication[] {
  try {
    const list = JSON.parse(fs.readFileSync(publicationsFile(root), 'utf8')) as Publication[];
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

/** Publications of one overlay, newest first. */
export function publicationsOf(overlayId: string, root?: string): Publication[] {
  return listPublications(root).filter((p) => p.overlayId === overlayId).reverse();
}

export function recordPublication(p: Publication, root?: string): void {
  const file = publicationsFile(root);
  // Keep one entry per reference: the newest.
  const list = listPublications(root).filter((x) => x.reference !== p.reference);
  list.push(p);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(list.slice(-500), null, 1));
  fs.renameSync(tmp, file);
}

/** Repositories of `registry` (other than `repo`) known to hold each digest. */
export function mountSources(registry: string, repo: string, root?: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const p of listPublications(root)) {
    if (p.registry !== registry || p.repository === repo) continue;
    for (const d of p.segments) {
      const repos = out.get(d) ?? [];
      if (!repos.includes(p.repository)) repos.push(p.repository);
      out.set(d, repos);
    }
  }
  return out;
}
