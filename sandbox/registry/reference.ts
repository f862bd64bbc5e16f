/**
 * Registry references: `HOST[:PORT]/REPO[:TAG][@sha256:...]`, optionally with an `oci://` prefix
 * (the form an overlay_url takes). The first path component is always the registry host: there is
 * no implicit Docker Hub, so a reference names exactly where the bytes come from.
 */
import { CloudletError } from '../common/errors';
import { isDigest } from './digest';

export interface Reference {
  registry: string;     // host[:port] as written (lower-cased)
  repository: string;   // e.g. team/app
  tag?: string;
  digest?: string;      // sha256:..., wins over tag when both are given
}

const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$/;

export function isOciUrl(s: string): boolean {
  return s.startsWith('oci://');
}

export function parseReference(input: string): Reference {
  const bad = (why: string) => new CloudletError('BadInput', `not a registry reference: ${JSON.stringify(input)} (${why})`, {
    hint: 'use HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:DIGEST, optionally prefixed with oci://',
  });
  let s = input.trim();
  if (s.startsWith('oci://')) s = s.slice('oci://'.length);
  else if (/^[a-z]+:\/\//i.test(s)) throw bad('only the oci:// scheme is a registry reference');
  const slash = s.indexOf('/');
  if (slash <= 0) throw bad('it must start with the registry host');
  const registry = s.slice(0, slash).toLowerCase();
  if (!HOST.test(registry)) throw bad(`bad registry host "${registry}"`);
  let rest = s.slice(slash + 1);
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw bad('the digest must be sha256: followed by 64 lower-case hex digits');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`bad tag "${tag}"`);
  }
  if (!rest || rest.length > 255 || !rest.split('/').every((c) => REPO_COMPONENT.test(c))) {
    throw bad(`bad repository name "${rest}" (lower-case letters, digits and . _ - separators)`);
  }
  if (!tag && !digest) tag = 'latest';
  return { registry, repository: rest, tag, digest };
}

/** The manifest reference to use in /v2/<repo>/manifests/<ref>. */
export function manifestRef(ref: Reference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

export function formatReference(ref: Reference, opts: { oci?: boolean } = {}): string {
  const base = `${opts.oci ? 'oci://' : ''}${ref.registry}/${ref.repository}`;
  if (ref.digest) return `${base}${ref.tag ? ':' + ref.tag : ''}@${ref.digest}`;
  return `${base}:${ref.tag ?? 'latest'}`;
}
