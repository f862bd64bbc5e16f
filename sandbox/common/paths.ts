import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/**
 * Where local state lives. One root (CLOUDLET_HOME, default ~/.local/share/cloudlet) holds:
 *   bases/<baseId>/        base VM bundles (see sandbox/base)
 *   sandboxes/<id>/        sandbox VMs (qcow2 layer, RAM copy, sockets, state.json)
 *   overlays/<overlayId>.overlay   built overlays
 *   tmp/                   work in progress; renamed into place only when complete
 * A daemon started with --data DIR uses DIR as its root, so several daemons never share state.
 */
export function cloudletHome(): string {
  return process.env.CLOUDLET_HOME || path.join(os.homedir(), '.local', 'share', 'cloudlet');
}

export interface StorePaths {
  root: string;
  bases: string;
  sandboxes: string;
  overlays: string;
  tmp: string;
}

export function storePaths(root: string = cloudletHome()): StorePaths {
  return {
    root,
    bases: path.join(root, 'bases'),
    sandboxes: path.join(root, 'sandboxes'),
    overlays: path.join(root, 'overlays'),
    tmp: path.join(root, 'tmp'),
  };
}

/** The project checkout this code runs from (sources via tsx, or dist/ when bundled). */
export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'sandbox'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

/**
 * Cache for downloads and built test guests: <checkout>/.cache (git-ignored) in a source checkout;
 * for an installed package (no sources; its folder may be root's) the user's ~/.cache/cloudlet.
 */
export function projectCache(...parts: string[]): string {
  const root = projectRoot();
  if (fs.existsSync(path.join(root, 'sandbox', 'cli'))) return path.join(root, '.cache', ...parts);
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'cloudlet', ...parts);
}
