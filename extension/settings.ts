/** The extension's settings (package.json "contributes.configuration"), read in one place. */
import * as vscode from 'vscode';
import { applicationCredentialOf, type CloudletConfig, type ConfigStore } from './cloudlets';
import type { LocalDaemonSettings } from './localDaemon';

const SECTION = 'cloudlet';

/**
 * A setting that decides where credentials go or what the extension runs (cloudlet URLs, the node
 * and CLI paths, the registry): read from user settings only. A folder's .vscode/settings.json must
 * not be able to point a saved cloudlet name at its own URL (the stored password would follow) or
 * make the extension run a program of its choosing.
 */
function userSetting<T>(key: string, fallback: T): T {
  const v = vscode.workspace.getConfiguration(SECTION).inspect<T>(key)?.globalValue;
  return v === undefined ? fallback : v;
}

export function localDaemonSettings(): LocalDaemonSettings {
  return {
    nodePath: userSetting<string>('nodePath', ''),
    cliPath: userSetting<string>('cliPath', ''),
    nodeArgs: userSetting<string[]>('nodeArgs', []),
    listen: userSetting<string>('localDaemon.listen', '127.0.0.1:8774'),
    dataDir: userSetting<string>('localDaemon.dataDir', ''),
    extraArgs: userSetting<string[]>('localDaemon.args', []),
  };
}

export function autoStart(): boolean {
  return userSetting<boolean>('localDaemon.autoStart', true);
}

export function debounceMs(): number {
  return vscode.workspace.getConfiguration(SECTION).get<number>('refresh.debounceMs', 300);
}

export const cloudletConfigStore: ConfigStore = {
  list(): CloudletConfig[] {
    const raw = userSetting<unknown[]>('cloudlets', []);
    return (Array.isArray(raw) ? raw : []).filter((x): x is CloudletConfig => !!x && typeof x === 'object' && typeof (x as CloudletConfig).name === 'string' && typeof (x as CloudletConfig).url === 'string')
      .map((x) => ({ name: x.name, url: x.url, username: x.username ?? 'admin', project: x.project ?? x.username ?? 'admin',
        ...(applicationCredentialOf(x.applicationCredential) ? { applicationCredential: applicationCredentialOf(x.applicationCredential) } : {}),
        ...(x.pins && typeof x.pins === 'object' ? { pins: Object.fromEntries(Object.entries(x.pins).filter(([, v]) => typeof v === 'string')) } : {}),
        ...(Array.isArray(x.regions) ? { regions: x.regions.filter((r): r is string => typeof r === 'string' && /^[\w.-]+$/.test(r)) } : {}) }));
  },
  async save(list: CloudletConfig[]): Promise<void> {
    await vscode.workspace.getConfiguration(SECTION).update('cloudlets', list, vscode.ConfigurationTarget.Global);
  },
};

/** Where one-click Publish pushes: HOST[:PORT]/REPOSITORY (cloudlet.registry.default). */
export function registryDefault(): string {
  return userSetting<string>('registry.default', '').trim();
}

/** The registry the user chose (cloudlet.registry.default in user settings), or undefined: ask on first publish. */
export function registryChosen(): string | undefined {
  const v = userSetting<string | undefined>('registry.default', undefined);
  return typeof v === 'string' && v.trim() ? v.trim() : undefined;
}

/** What happens to running sandbox VMs when the window closes (cloudlet.sandbox.onWindowClose). */
export function onWindowClose(): 'keepRunning' | 'pause' {
  return userSetting<string>('sandbox.onWindowClose', 'keepRunning') === 'pause' ? 'pause' : 'keepRunning';
}

/** A PEM file of the CA the registry's TLS certificate is signed by (cloudlet.registry.caFile), or ''. */
export function registryCaFile(): string {
  return userSetting<string>('registry.caFile', '').trim();
}
