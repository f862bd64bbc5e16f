/**
 * The VM layer of the compute API. Until the sandbox manager (sandbox/qemu) is wired in, this
 * backend only advertises bases found in <data>/bases and refuses VM work with a clear 503.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { VmBackend } from './vmBackend';
import { CloudletError } from '../common/errors';
import { storePaths } from '../common/paths';

export function createVmBackend(dataDir: string): VmBackend {
  const basesDir = storePaths(dataDir).bases;
  const unavailable = (): never => { throw new CloudletError('Unavailable', 'this cloudlet has no VM layer yet'); };
  const bases = () => {
    if (!fs.existsSync(basesDir)) return [];
    return fs.readdirSync(basesDir).filter((id) => fs.existsSync(path.join(basesDir, id, 'manifest.json'))).map((baseId) => {
      const m = JSON.parse(fs.readFileSync(path.join(basesDir, baseId, 'manifest.json'), 'utf8'));
      return { baseId, name: String(m.name ?? `base-${baseId.slice(0, 12)}`), ramBytes: Number(m.vm?.ramBytes ?? m.ramBytes ?? 0), diskBytes: Number(m.diskBytes ?? 0) };
    });
  };
  return {
    hasBase: (id) => bases().some((b) => b.baseId === id),
    bases,
    resume: async () => unavailable(),
    inspectOverlay: () => unavailable(),
    synthesize: async () => unavailable(),
    makeOverlay: async () => unavailable(),
    get: () => undefined,
    pause: async () => unavailable(),
    unpause: async () => unavailable(),
    stop: async () => unavailable(),
    delete: async () => {},
    adopt: async () => [],
  };
}
