/** The extension's settings (package.json "contributes.configuration"), read in one place. */
import * as vscode from 'vscode';
import type { CloudletConfig, ConfigStore } from './cloudlets';
import type { LocalDaemonSettings } from './localDaemon';

const SECTION = 'cloudlet';

export function localDaemonSettings(): LocalDaemonSettings {
  const c = vscode.workspace.getConfiguration(SECTION);
  return {
    nodePath: c.get<string>('nodePath', ''),
    cliPath: c.get<string>('cliPath', ''),
    nodeArgs: c.get<string[]>('nodeArgs', []),
    listen: c.get<string>('localDaemon.listen', '127.0.0.1:8774'),
    dataDir: c.get<string>('localDaemon.dataDir', ''),
    extraArgs: c.get<string[]>('localDaemon.args', []),
  };
}

export function autoStart(): boolean {
  return vscode.workspace.getConfiguration(SECTION).get<boolean>('localDaemon.autoStart', true);
}

export function debounceMs(): number {
  return vscode.workspace.getConfiguration(SECTION).get<number>('refresh.debounceMs', 300);
}

export const cloudletConfigStore: ConfigStore = {
  list(): CloudletConfig[] {
    const raw = vscode.workspace.getConfiguration(SECTION).get<unknown[]>('cloudlets', []);
    return (Array.isArray(raw) ? raw : []).filter((x): x is CloudletConfig => !!x && typeof x === 'object' && typeof (x as CloudletConfig).name === 'string' && typeof (x as CloudletConfig).url === 'string')
      .map((x) => ({ name: x.name, url: x.url, username: x.username ?? 'admin', project: x.project ?? x.username ?? 'admin' }));
  },
  async save(list: CloudletConfig[]): Promise<void> {
    await vscode.workspace.getConfiguration(SECTION).update('cloudlets', list, vscode.ConfigurationTarget.Global);
  },
};

/** Where one-click Publish pushes: HOST[:PORT]/REPOSITORY (cloudlet.registry.default). */
export function registryDefault(): string {
  return vscode.workspace.getConfiguration(SECTION).get<string>('registry.default', '127.0.0.1:5000/overlays').trim();
}

/** A PEM file of the CA the registry's TLS certificate is signed by (cloudlet.registry.caFile), or ''. */
export function registryCaFile(): string {
  return vscode.workspace.getConfiguration(SECTION).get<string>('registry.caFile', '').trim();
}
