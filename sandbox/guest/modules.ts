/**
 * Kernel module dependency order without depmod/kmod on the host: each .ko's .modinfo section
 * carries "depends=a,b"; we read it from the file and order modules so dependencies load first.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CloudletError } from '../common/errors';

/** Index name -> path relative to modulesDir, for every .ko under kernel/. */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(modulesDir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.ko')) index.set(e.name.slice(0, -3).replace(/-/g, '_'), r);
    }
  };
  walk('kernel');
  return index;
}

export function moduleDepends(file: string): string[] {
  const text = fs.readFileSync(file).toString('latin1');
  const m = /\0depends=([^\0]*)\0/.exec(text);
  return m && m[1] ? m[1].split(',').filter(Boolean).map((s) => s.replace(/-/g, '_')) : [];
}

/** The named modules and all their dependencies, dependencies first (paths relative to modulesDir). */
export function resolveModules(modulesDir: string, names: string[]): string[] {
  const index = indexModules(modulesDir);
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]) => {
    const key = name.replace(/-/g, '_');
    if (seen.has(key)) return;
    const rel = index.get(key);
    if (!rel) {
      // Built into the kernel (modules.builtin) is fine; anything else is a broken request.
      const builtin = fs.existsSync(path.join(modulesDir, 'modules.builtin'))
        ? fs.readFileSync(path.join(modulesDir, 'modules.builtin'), 'utf8') : '';
      if (new RegExp(`/${key.replace(/_/g, '[_-]')}\\.ko$`, 'm').test(builtin)) { seen.add(key); return; }
      throw new CloudletError('Internal', `kernel module ${name} not found (needed by ${chain.join(' <- ') || 'the guest'})`);
    }
    seen.add(key);
    for (const d of moduleDepends(path.join(modulesDir, rel))) visit(d, [name, ...chain]);
    order.push(rel);
  };
  for (const n of names) visit(n, []);
  return order;
}
