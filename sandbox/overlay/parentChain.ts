/**
 * Parent overlays (docs/overlay-format.md "Parent overlays"): a child overlay stores its changes
 * against its parent overlay's launch images, the parent against its own parent, down to a root
 * made against the base. Before any segment byte is used the whole chain is resolved and checked
 * (resolveChain); synthesis then applies root to leaf, each hop's launch the next hop's base
 * (applyChain), every segment verified by applyOverlay as for any overlay.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';
import { applyOverlay, type ApplyBase, type ApplyOptions, type ApplyResult } from './apply';
import { canonicalJson, MAX_CHAIN_DEPTH, type OverlayManifest } from './format';
import { OverlayReader, type SegmentSource } from './overlayReader';

/** One overlay of a chain: its checked manifest, its ID as recomputed from that manifest, its segments. */
export interface ChainHop { manifest: OverlayManifest; overlayId: string; source: SegmentSource }

/** Finds an overlay by ID (local store, same registry repository); undefined when it is not there. */
export type ParentLookup = (overlayId: string) => Promise<ChainHop | undefined>;

/** The VM an overlay resumes, without what may differ along a chain (the MAC, the forwarded ports). */
function vmShape(m: OverlayManifest): string {
  const { ports: _p, nic, ...rest } = m.vmConfig;
  return canonicalJson({ ...rest, nic: { model: nic.model } });
}

/**
 * Checks that `parent` is the overlay `child` names and can be its base: same ID as the reference
 * (recomputed from its manifest, so a tampered parent or reference is refused), same base and VM
 * shape, launch images of the sizes the child's records assume, and depth one less.
 */
export function checkParent(child: ChainHop, parent: ChainHop): void {
  const ref = child.manifest.parent;
  const c = child.overlayId.slice(0, 12);
  if (!ref) throw new CloudletError('Internal', `overlay ${c} names no parent`);
  if (parent.overlayId !== ref.id) {
    throw new CloudletError('Corrupt', `overlay ${c} names parent ${ref.id}, but the overlay found under that ID is ${parent.overlayId} (a tampered parent or reference); refused`);
  }
  if (parent.manifest.baseId !== child.manifest.baseId) {
    throw new CloudletError('Mismatch', `overlay ${c}'s parent ${ref.id.slice(0, 12)} was made for base ${parent.manifest.baseId}, the child for base ${child.manifest.baseId}; refused`);
  }
  if (vmShape(parent.manifest) !== vmShape(child.manifest)) {
    throw new CloudletError('Mismatch', `overlay ${c}'s parent ${ref.id.slice(0, 12)} resumes another VM (machine, CPU, memory or devices differ); refused`);
  }
  if (child.manifest.base.ramSize !== parent.manifest.ram.size || child.manifest.base.diskSize !== parent.manifest.disk.size) {
    throw new CloudletError('Mismatch', `overlay ${c} expects launch images of ${child.manifest.base.ramSize}/${child.manifest.base.diskSize} bytes (RAM/disk), its parent ${ref.id.slice(0, 12)} makes ${parent.manifest.ram.size}/${parent.manifest.disk.size}; refused`);
  }
  const parentDepth = parent.manifest.parent?.depth ?? 0;
  if (ref.depth !== parentDepth + 1) {
    throw new CloudletError('Corrupt', `overlay ${c} says it is ${ref.depth} hops from its base, but its parent ${ref.id.slice(0, 12)} is ${parentDepth}; refused`);
  }
}

/**
 * Resolves `leaf`'s chain through `lookup` and checks every hop; returns it root first (the leaf
 * last). Refusals (CloudletError, code in the API's error bodies): a parent not found (NotFound,
 * "pull or publish it first"), another base or VM (Mismatch), an ID that does not match or a wrong
 * depth (Corrupt), a chain deeper than MAX_CHAIN_DEPTH (BadInput).
 */
export async function resolveChain(leaf: ChainHop, lookup: ParentLookup): Promise<ChainHop[]> {
  const chain: ChainHop[] = [leaf];
  for (let hop = leaf; hop.manifest.parent; ) {
    const ref = hop.manifest.parent;
    if (chain.length > MAX_CHAIN_DEPTH || ref.depth > MAX_CHAIN_DEPTH) {
      throw new CloudletError('BadInput', `overlay ${leaf.overlayId.slice(0, 12)}'s chain is deeper than ${MAX_CHAIN_DEPTH} parent overlays; refused`, { hint: 'cloudlet overlay flatten turns a chain into one overlay against the base' });
    }
    const parent = await lookup(ref.id);
    if (!parent) {
      throw new CloudletError('NotFound', `overlay ${hop.overlayId.slice(0, 12)} needs its parent overlay ${ref.id}, which is not here: pull or publish ${ref.id.slice(0, 12)} first`, {
        hint: `cloudlet overlay pull REGISTRY/REPOSITORY:TAG-OF-${ref.id.slice(0, 12)} (or publish the parent to the child's repository)`, status: 400,
      });
    }
    checkParent(hop, parent);
    chain.unshift(parent);
    hop = parent;
  }
  return chain;
}

/**
 * Applies a resolved chain (root first) to the base: each hop's launch files are the next hop's
 * base, intermediate launches are built in a work folder next to `opts.outDir` and removed; the
 * leaf's launch appears at `opts.outDir` only when the whole chain applied.
 */
export async function applyChain(chain: ChainHop[], base: Omit<ApplyBase, 'parent'>, opts: ApplyOptions): Promise<ApplyResult> {
  if (chain.length === 1) return applyOverlay(chain[0], chain[0].source, base, opts);
  const work = `${opts.outDir}.chain-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  fs.mkdirSync(work, { recursive: true });
  const t0 = Date.now();
  let fetchDecodeMs = 0;
  try {
    let prev: ApplyResult | undefined;
    for (const [i, hop] of chain.entries()) {
      const last = i === chain.length - 1;
      const r: ApplyResult = await applyOverlay(hop, hop.source, {
        ...base,
        ramFile: prev?.ramFile ?? base.ramFile,
        parent: prev ? { overlayId: chain[i - 1].overlayId, diskLayer: prev.diskLayer } : undefined,
      }, { ...opts, outDir: last ? opts.outDir : path.join(work, `hop-${i}`) });
      fetchDecodeMs += r.timings.fetchDecodeMs;
      if (prev) fs.rmSync(prev.dir, { recursive: true, force: true });
      prev = r;
    }
    return { ...prev!, timings: { fetchDecodeMs, totalMs: Date.now() - t0 } };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A ParentLookup over folders of `<overlayId>.overlay` files (the local store, the folder of the
 * child's file). Opened readers are added to `opened`; the caller closes them.
 */
export function folderLookup(dirs: string[], opened: OverlayReader[]): ParentLookup {
  return async (id) => {
    for (const dir of dirs) {
      const file = path.join(dir, `${id}.overlay`);
      if (!fs.existsSync(file)) continue;
      const r = OverlayReader.open(file);
      opened.push(r);
      return { manifest: r.manifest, overlayId: r.overlayId, source: r };
    }
    return undefined;
  };
}
