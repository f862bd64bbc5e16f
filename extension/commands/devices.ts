/**
 * Edge devices on the configured cloudlets that offer the reservation service: reserve a device
 * (a Blazar lease), run a container on it (Zun), show its logs, end the lease, and the
 * Reservations panel (leases per device on a time axis).
 */
import * as vscode from 'vscode';
import type { CommandDef } from './registry';
import type { Ext } from '../ext';
import type { Container, DevicesApi, Lease } from '../../sandbox/client/devices';
import { isNode, need, sessionOf } from './common';
import { CloudletError } from '../../sandbox/client';
import { choiceFilter, defaultLeaseName, deviceChoices, leaseLabel, parseEnv, parseMinutes, parsePorts } from '../state/devicesView';

export async function devicesOf(ext: Ext, cloudlet: string): Promise<DevicesApi> {
  const d = (await sessionOf(ext, cloudlet)).devices?.();
  if (!d) throw new CloudletError('BadInput', `${cloudlet} offers no devices (no reservation service in its catalog)`);
  return d;
}

/** Configured cloudlets that offer devices; asks which when there are several. */
async function pickDeviceCloudlet(ext: Ext, placeHolder: string): Promise<string> {
  const names: string[] = [];
  for (const c of ext.cloudlets.list()) {
    const ok = await sessionOf(ext, c.name).then((s) => !!s.devices?.(), () => false);
    if (ok) names.push(c.name);
  }
  if (!names.length) throw new CloudletError('NotFound', 'No configured cloudlet offers devices', { hint: 'Run "Cloudlet: Add Cloudlet..." with a cloudlet that lends out edge devices' });
  if (names.length === 1) return names[0];
  return need(await vscode.window.showQuickPick(names.map((n) => ({ label: n, description: ext.cloudlets.find(n)?.url ?? '' })), { placeHolder, ignoreFocusOut: true })).label;
}

/** Leases of every device cloudlet (or of the node's), filtered; picks one. */
async function pickLease(ext: Ext, node: unknown, placeHolder: string, filter: (l: Lease) => boolean): Promise<{ cloudlet: string; lease: Lease }> {
  if (isNode(node) && node.kind === 'lease' && node.cloudlet && node.resourceId) {
    return { cloudlet: node.cloudlet, lease: await (await devicesOf(ext, node.cloudlet)).getLease(node.resourceId) };
  }
  const cloudlet = isNode(node) && node.cloudlet ? node.cloudlet : await pickDeviceCloudlet(ext, 'On which cloudlet');
  const d = await devicesOf(ext, cloudlet);
  const [leases, devices] = await Promise.all([d.listLeases(), d.listDevices()]);
  const names = new Map(devices.map((x) => [x.id, x.name]));
  let cands = leases.filter(filter);
  if (isNode(node) && node.kind === 'device' && node.resourceId) cands = cands.filter((l) => l.reservations.some((r) => r.allocated_devices.includes(node.resourceId!)));
  if (!cands.length) throw new CloudletError('NotFound', `No matching lease on ${cloudlet}`, { hint: 'Reserve a device first (Cloudlet: Reserve Device...)' });
  if (cands.length === 1) return { cloudlet, lease: cands[0] };
  const picked = await vscode.window.showQuickPick(cands.map((l) => ({ ...leaseLabel(l, names), l })), { placeHolder, ignoreFocusOut: true });
  return { cloudlet, lease: need(picked).l };
}

async function pickContainer(ext: Ext, node: unknown): Promise<{ cloudlet: string; container: Container }> {
  if (isNode(node) && node.kind === 'container' && node.cloudlet && node.resourceId) {
    return { cloudlet: node.cloudlet, container: await (await devicesOf(ext, node.cloudlet)).getContainer(node.resourceId) };
  }
  const cloudlet = isNode(node) && node.cloudlet ? node.cloudlet : await pickDeviceCloudlet(ext, 'On which cloudlet');
  const cs = await (await devicesOf(ext, cloudlet)).listContainers();
  if (!cs.length) throw new CloudletError('NotFound', `No container on ${cloudlet}`, { hint: 'Run one first (Cloudlet: Run Container on Reserved Device...)' });
  if (cs.length === 1) return { cloudlet, container: cs[0] };
  const picked = await vscode.window.showQuickPick(cs.map((c) => ({ label: c.name, description: `${c.status} · ${c.device_name} · ${c.image}`, c })), { placeHolder: 'Container', ignoreFocusOut: true });
  return { cloudlet, container: need(picked).c };
}

const live = (l: Lease) => l.status === 'ACTIVE' || l.status === 'PENDING' || l.status === 'STARTING';

export const deviceCommands: CommandDef[] = [
  {
    id: 'cloudlet.enrollDevice',
    async run(ext, node?: unknown) {
      const cloudlet = isNode(node) && node.cloudlet ? node.cloudlet : await pickDeviceCloudlet(ext, 'Enroll a device on which cloudlet');
      const s = await sessionOf(ext, cloudlet);
      if (s.isAdmin && !s.isAdmin()) {
        throw new CloudletError('Forbidden', `Only an admin of ${cloudlet} can enroll devices, and your login there is not one`,
          { hint: 'ask its operator, or use "Update Credentials..." with an admin user' });
      }
      const d = await devicesOf(ext, cloudlet);
      const title = (n: number) => `Enroll Device on ${cloudlet} (${n}/4)`;
      const engine = need(await vscode.window.showInputBox({ title: title(1), prompt: 'Docker engine of the device, as the cloudlet reaches it: tcp://HOST:PORT or unix:///path/docker.sock (the daemon talks to it; a TLS-protected engine is reached through a local socket proxy)',
        placeHolder: 'tcp://192.0.2.10:2375', ignoreFocusOut: true, validateInput: (v) => (/^(tcp|http):\/\/[^:/]+:\d+\/?$|^unix:\/\/\//.test(v.trim()) ? undefined : 'tcp://HOST:PORT or unix:///path') })).trim();
      const name = need(await vscode.window.showInputBox({ title: title(2), prompt: 'Device name', placeHolder: 'pi-1', ignoreFocusOut: true,
        validateInput: (v) => (/^[\w.-]{1,64}$/.test(v.trim()) ? undefined : 'Letters, digits, dot, dash, underscore') })).trim();
      const machineName = need(await vscode.window.showInputBox({ title: title(3), prompt: 'Machine name (what users reserve "any" of)', placeHolder: 'raspberrypi4-64', ignoreFocusOut: true,
        validateInput: (v) => (/^[\w.-]{1,64}$/.test(v.trim()) ? undefined : 'Letters, digits, dot, dash, underscore') })).trim();
      const propsText = need(await vscode.window.showInputBox({ title: title(4), prompt: 'Properties (KEY=VALUE ..., optional), e.g. camera=yes gpu=none', ignoreFocusOut: true,
        validateInput: (v) => (parseEnv(v) ? undefined : 'KEY=VALUE separated by spaces') }));
      const properties = parseEnv(propsText) ?? {};
      const device = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Enrolling ${name} on ${cloudlet}: checking its Docker engine` }, async (progress) => {
        const hw = await d.enrollDevice({ name, machineName, engineEndpoint: engine, properties });
        // The daemon checks the engine (its health check pings it); wait for the first verdict.
        const deadline = Date.now() + 30_000;
        for (;;) {
          const now = (await d.listHardware()).find((x) => x.uuid === hw.uuid);
          const status = now?.health?.status ?? 'unknown';
          progress.report({ message: status });
          if (status !== 'unknown' || Date.now() > deadline) return { hw, status, error: now?.health?.error };
          await new Promise((r) => setTimeout(r, 1000));
        }
      });
      ext.refresh('devices', true);
      if (device.status !== 'up') {
        const c = await vscode.window.showWarningMessage(`${name} is enrolled on ${cloudlet}, but its Docker engine at ${engine} ${device.status === 'down' ? `does not answer${device.error ? `: ${device.error}` : ''}` : 'was not checked yet'}.`, 'Remove It', 'Keep It');
        if (c === 'Remove It') { await d.removeDevice(device.hw.uuid); ext.refresh('devices', true); }
        return;
      }
      void vscode.window.showInformationMessage(`${name} (${machineName}) is enrolled on ${cloudlet}; its Docker engine answers.`);
    },
  },
  {
    id: 'cloudlet.reserveDevice',
    async run(ext, node?: unknown) {
      const cloudlet = isNode(node) && node.cloudlet ? node.cloudlet : await pickDeviceCloudlet(ext, 'Reserve a device of which cloudlet');
      const d = await devicesOf(ext, cloudlet);
      const [devices, leases] = await Promise.all([d.listDevices(), d.listLeases()]);
      if (!devices.length) throw new CloudletError('NotFound', `${cloudlet} has no device your project may use`);
      const choices = deviceChoices(devices, leases);
      const preset = isNode(node) && node.kind === 'device' ? choices.find((c) => c.deviceName === node.label) : undefined;
      const choice = preset ?? need(await vscode.window.showQuickPick(choices, { title: 'Reserve Device (1/3)', placeHolder: 'Which device (or any of a machine type)', ignoreFocusOut: true }));
      const minutes = parseMinutes(need(await vscode.window.showInputBox({ title: 'Reserve Device (2/3)', prompt: 'For how long (minutes, or e.g. 2h)', value: '60', ignoreFocusOut: true,
        validateInput: (v) => (parseMinutes(v) ? undefined : 'A length such as 30, 90m or 2h') })))!;
      const name = need(await vscode.window.showInputBox({ title: 'Reserve Device (3/3)', prompt: 'Lease name', value: defaultLeaseName(choice, new Date()), ignoreFocusOut: true,
        validateInput: (v) => (v.trim() ? undefined : 'A name is needed') })).trim();
      const lease = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Reserving ${choice.deviceName ?? choice.machineName} on ${cloudlet}` },
        () => d.createLease({ name, minutes, ...choiceFilter(choice) }));
      ext.refresh('devices', true);
      ext.reservations.reload();
      const names = new Map(devices.map((x) => [x.id, x.name]));
      const on = lease.reservations.flatMap((r) => r.allocated_devices).map((id) => names.get(id) ?? id).join(', ');
      void vscode.window.showInformationMessage(`Lease ${lease.name} is ${lease.status} on ${on || 'a device'} until ${lease.end_date.slice(11, 16)} UTC.`, 'Run Container...').then((c) => {
        if (c) void vscode.commands.executeCommand('cloudlet.runContainer', { kind: 'lease', contextValue: 'lease active', cloudlet, resourceId: lease.id, id: `lease:${cloudlet}:${lease.id}`, label: lease.name, icon: '', collapsible: 'none' });
      });
      return lease;
    },
  },
  {
    id: 'cloudlet.runContainer',
    async run(ext, node?: unknown) {
      const { cloudlet, lease } = await pickLease(ext, node, 'Run the container under which lease', (l) => l.status === 'ACTIVE');
      if (lease.status !== 'ACTIVE') throw new CloudletError('BadInput', `Lease ${lease.name} is ${lease.status}, not ACTIVE`);
      const d = await devicesOf(ext, cloudlet);
      const lastImage = ext.context.globalState.get<string>('cloudlet.lastContainerImage') ?? '';
      const image = need(await vscode.window.showInputBox({ title: 'Run Container (1/4)', prompt: 'Image (from a registry the device reaches)', placeHolder: '127.0.0.1:5000/app:1', value: lastImage, ignoreFocusOut: true,
        validateInput: (v) => (v.trim() && !/\s/.test(v.trim()) ? undefined : 'An image reference such as 127.0.0.1:5000/app:1') })).trim();
      const command = need(await vscode.window.showInputBox({ title: 'Run Container (2/4)', prompt: 'Command (empty: the image\'s own)', ignoreFocusOut: true })).trim();
      const ports = parsePorts(need(await vscode.window.showInputBox({ title: 'Run Container (3/4)', prompt: 'Ports it listens on (e.g. 8080, 9000/udp; empty: none)', ignoreFocusOut: true,
        validateInput: (v) => (parsePorts(v) ? undefined : 'Ports such as 8080 or 8080/tcp, separated by commas') })))!;
      const env = parseEnv(need(await vscode.window.showInputBox({ title: 'Run Container (4/4)', prompt: 'Environment (KEY=VALUE ...; empty: none)', ignoreFocusOut: true,
        validateInput: (v) => (parseEnv(v) ? undefined : 'KEY=VALUE pairs separated by spaces') })))!;
      await ext.context.globalState.update('cloudlet.lastContainerImage', image);
      const c = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Starting ${image} under lease ${lease.name}`, cancellable: true }, async (progress, token) => {
        const abort = new AbortController();
        token.onCancellationRequested(() => abort.abort());
        const created = await d.runContainer({ reservationId: lease.reservations[0].id, image, ...(command ? { command } : {}),
          ...(ports.length ? { exposedPorts: ports } : {}), ...(Object.keys(env).length ? { environment: env } : {}) });
        ext.refresh('devices');
        progress.report({ message: `pulling and starting ${created.name}` });
        try {
          return await d.waitContainer(created.uuid, ['Running', 'Stopped', 'Created'], { signal: abort.signal, timeoutMs: 300_000 });
        } catch (e) {
          // Cancel means "don't run it": remove the container the device is already pulling/starting.
          if (abort.signal.aborted) {
            await d.deleteContainer(created.uuid, { force: true }).catch((err) => ext.output.warn(`could not remove cancelled container ${created.name}: ${(err as Error).message}`));
            ext.refresh('devices', true);
          }
          throw e;
        }
      });
      ext.refresh('devices', true);
      void vscode.window.showInformationMessage(`Container ${c.name} is ${c.status} on ${c.device_name}.`, 'Show Logs').then((x) => {
        if (x) void vscode.commands.executeCommand('cloudlet.showContainerLogs', { kind: 'container', contextValue: 'container', cloudlet, resourceId: c.uuid, id: c.uuid, label: c.name, icon: '', collapsible: 'none' });
      });
      return c;
    },
  },
  {
    id: 'cloudlet.showContainerLogs',
    async run(ext, node?: unknown) {
      const { cloudlet, container } = await pickContainer(ext, node);
      const text = await (await devicesOf(ext, cloudlet)).containerLogs(container.uuid, { tail: 2000 });
      await ext.logs.show(cloudlet, container, typeof text === 'string' ? text : JSON.stringify(text));
    },
  },
  {
    id: 'cloudlet.endLease',
    async run(ext, node?: unknown) {
      const { cloudlet, lease } = await pickLease(ext, node, 'Lease to end', live);
      const ok = await vscode.window.showWarningMessage(`End lease ${lease.name} now? Its containers are stopped and removed.`, { modal: true }, 'End Lease');
      if (ok !== 'End Lease') return;
      const d = await devicesOf(ext, cloudlet);
      const ended = lease.status === 'PENDING' ? (await d.deleteLease(lease.id), undefined) : await d.endLease(lease.id);
      ext.refresh('devices', true);
      ext.reservations.reload();
      void vscode.window.showInformationMessage(`Lease ${lease.name} ${ended ? `is ${ended.status}` : 'deleted'}.`);
    },
  },
  {
    id: 'cloudlet.showReservations',
    run(ext) { ext.reservations.open(); },
  },
];
