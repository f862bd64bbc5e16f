/**
 * Pure state for one-click Publish (no vscode import): the reference an overlay is published as,
 * the registry host its credentials are kept under, whether a failure asks for credentials, and the
 * Overlay panel's state while publishing.
 */
import type { ProgressEvent } from '../../sandbox/client/types';
import type { JobEnd } from '../api';
import type { OverlayPanelState } from '../protocol';
import { applyPhase, closePhases } from './panels';

/** "127.0.0.1:5000/overlays" (or with oci://, a trailing slash) -> {registry, repository}. */
export function parseTarget(target: string): { registry: string; repository: string } | undefined {
  const t = target.trim().replace(/^oci:\/\//, '').replace(/\/+$/, '');
  const slash = t.indexOf('/');
  if (slash <= 0 || slash === t.length - 1) return undefined;
  const registry = t.slice(0, slash), repository = t.slice(slash + 1);
  if (!/^[\w.-]+(:\d+)?$/.test(registry) || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(repository)) return undefined;
  return { registry, repository };
}

/** A tag from the overlay's name and image id: readable and unique per overlay ("sample-backend-1a2b3c4d"). */
export function publishTag(name: string, imageId: string): string {
  const slug = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^[^a-z0-9_]+/, '').replace(/-+$/, '').slice(0, 100) || 'overlay';
  const id = imageId.replace(/[^a-f0-9]/gi, '').toLowerCase().slice(0, 8);
  return id ? `${slug}-${id}` : slug;
}

/** The reference one-click Publish uses: DEFAULT_REGISTRY/REPOSITORY:TAG. Undefined when the setting is not usable. */
export function publishReference(target: string, name: string, imageId: string): string | undefined {
  const t = parseTarget(target);
  return t ? `${t.registry}/${t.repository}:${publishTag(name, imageId)}` : undefined;
}

/** The registry part of a reference ("oci://127.0.0.1:5000/a/b:c" -> "127.0.0.1:5000"). */
export function registryHostOf(ref: string): string {
  return ref.replace(/^oci:\/\//, '').split('/')[0];
}

/** Key of a registry's credentials in VS Code's SecretStorage. */
export const registrySecretKey = (host: string) => `cloudlet.registry/${host}`;

/** A failure that new credentials could fix: the registry refused or asked for a login (by the job's error code). */
export function isAuthError(end: JobEnd): boolean {
  return end.status === 'ERROR' && (end.fault?.code === 'Unauthorized' || end.fault?.code === 'Forbidden');
}

/** Reads credentials kept as JSON {username, password}; anything else counts as none. */
export function parseRegistrySecret(raw: string | undefined): { username: string; password: string } | undefined {
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as { username?: unknown; password?: unknown };
    return typeof v.username === 'string' && typeof v.password === 'string' && v.username ? { username: v.username, password: v.password } : undefined;
  } catch { return undefined; }
}

export function overlayPublishing(s: OverlayPanelState, e?: ProgressEvent): OverlayPanelState {
  const ev: ProgressEvent = e ?? { phase: 'publish', message: 'starting', at: Date.now() };
  return { ...s, publishing: true, error: undefined, phases: applyPhase(s.phases, { ...ev, phase: ev.phase === 'upload' ? 'publish' : ev.phase }) };
}

export function overlayPublishEnded(s: OverlayPanelState, end: JobEnd, reference?: string): OverlayPanelState {
  const error = end.status === 'DONE' ? undefined : end.status === 'CANCELLED' ? 'Publishing cancelled' : `Publishing failed: ${end.error ?? 'unknown error'}`;
  return { ...s, publishing: false, error, phases: closePhases(s.phases), publishedRef: end.status === 'DONE' ? reference ?? s.publishedRef : s.publishedRef };
}
