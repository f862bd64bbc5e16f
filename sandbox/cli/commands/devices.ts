/**
 * `cloudlet devices`, `cloudlet lease create|list|show|extend|end|delete`,
 * `cloudlet container run|list|logs|exec|rm`: edge devices through sandbox/client (Blazar leases,
 * Zun containers), on the cloudlet you logged in to with `cloudlet login` (or --cloudlet).
 */
import type { Command } from 'commander';
import { devicesApi, type DevicesApi, type Lease, type Container } from '../../client/devices';
import { CloudletError } from '../../common/errors';
import { clientFor } from '../sessions';

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (c ?? '').padEnd(w[i])).join('  ').trimEnd()).join('\n') + '\n';
}

const out = (s: string) => process.stdout.write(s);
const asJson = (v: unknown) => out(JSON.stringify(v, null, 2) + '\n');

async function api(cloudlet?: string): Promise<DevicesApi> {
  return devicesApi(await clientFor(cloudlet));
}

/** "2025-01-31T10:00:00.000000" (UTC) -> "in 1h 5m" / "ended". */
export function timeLeft(lease: Pick<Lease, 'status' | 'start_date' | 'end_date'>, now = Date.now()): string {
  const start = Date.parse(lease.start_date + 'Z'), end = Date.parse(lease.end_date + 'Z');
  const span = (ms: number) => {
    const m = Math.max(0, Math.round(ms / 60_000));
    return m >= 60 ? `${Math.floor(m / 60)}h ${m % 60}m` : m > 0 ? `${m}m` : `${Math.max(0, Math.round(ms / 1000))}s`;
  };
  if (lease.status === 'TERMINATED' || end <= now) return 'ended';
  if (start > now) return `starts in ${span(start - now)}`;
  return `${span(end - now)} left`;
}

/** A lease by id or by name (names are unique among a project's live leases). */
async function findLease(d: DevicesApi, ref: string): Promise<Lease> {
  if (/^[0-9a-f-]{36}$/.test(ref)) return d.getLease(ref);
  const matches = (await d.listLeases()).filter((l) => l.name === ref);
  const live = matches.filter((l) => l.status !== 'TERMINATED');
  const l = live[0] ?? matches[0];
  if (!l) throw new CloudletError('NotFound', `no lease named ${ref}`);
  return l;
}

function parseDate(text: string): Date {
  if (text === 'now') return new Date();
  const d = new Date(/Z|[+-]\d\d:?\d\d$/.test(text) ? text : `${text.replace(' ', 'T')}Z`);
  if (Number.isNaN(d.getTime())) throw new CloudletError('BadInput', `not a date: ${text} (use "YYYY-MM-DD HH:MM" in UTC)`);
  return d;
}

function leaseRows(leases: Lease[], names: Map<string, string>): string {
  return table([['ID', 'NAME', 'STATUS', 'DEVICES', 'START (UTC)', 'END (UTC)', 'TIME', 'NOTE'],
    ...leases.map((l) => [l.id, l.name, l.status,
      l.reservations.flatMap((r) => r.allocated_devices).map((id) => names.get(id) ?? id.slice(0, 8)).join(','),
      l.start_date.slice(0, 16).replace('T', ' '), l.end_date.slice(0, 16).replace('T', ' '), timeLeft(l), l.degraded ? `degraded: ${l.degraded_reason}` : ''])]);
}

async function deviceNames(d: DevicesApi): Promise<Map<string, string>> {
  return new Map((await d.listDevices()).map((x) => [x.id, x.name]));
}

function containerRows(cs: Container[]): string {
  return table([['ID', 'NAME', 'STATUS', 'DEVICE', 'IMAGE', 'LEASE'], ...cs.map((c) => [c.uuid, c.name, c.status, c.device_name, c.image, c.lease_id])]);
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function register(program: Command): void {
  const devices = program.command('devices')
    .description('edge devices you may reserve, their health and their reservations')
    .option('--cloudlet <name|url>', 'which saved cloudlet (default: the current one)')
    .option('--json', 'machine-readable output')
    .action(async (o: { cloudlet?: string; json?: boolean }) => {
      const d = await api(o.cloudlet);
      const [list, alloc] = await Promise.all([d.listDevices(), d.allocations()]);
      if (o.json) { asJson(list.map((x) => ({ ...x, reservations: alloc.find((a) => a.resource_id === x.id)?.reservations ?? [] }))); return; }
      out(table([['NAME', 'MACHINE', 'MODEL', 'HEALTH', 'RESERVED'], ...list.map((x) => {
        const rs = alloc.find((a) => a.resource_id === x.id)?.reservations ?? [];
        return [x.name, x.machine_name, x.model ?? '', x.health.status,
          rs.map((r) => `${r.mine ? r.lease_name : 'other project'} ${r.start_date.slice(5, 16).replace('T', ' ')}-${r.end_date.slice(11, 16)}`).join('; ')];
      })]));
    });

  devices.command('enroll <name>')
    .description('enroll a device (admin): its Docker engine endpoint is never shown to users')
    .requiredOption('--machine-name <name>', 'e.g. raspberrypi4-64')
    .requiredOption('--engine <endpoint>', 'unix:///path/docker.sock or tcp://HOST:PORT')
    .option('--model <model>', 'e.g. "Raspberry Pi 4 Model B"')
    .option('--property <key=value>', 'free-form property (repeatable)', collect, [])
    .option('--project <id>', 'authorized project id (repeatable; none = every project)', collect, [])
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (name: string, o: { machineName: string; engine: string; model?: string; property: string[]; project: string[]; cloudlet?: string }) => {
      const properties: Record<string, unknown> = {};
      for (const p of o.property) {
        const i = p.indexOf('=');
        if (i <= 0) throw new CloudletError('BadInput', `--property wants KEY=VALUE, got ${p}`);
        const v = p.slice(i + 1);
        properties[p.slice(0, i)] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
      }
      const hw = await (await api(o.cloudlet)).enrollDevice({ name, machineName: o.machineName, model: o.model, engineEndpoint: o.engine, properties, authorizedProjects: o.project });
      out(`enrolled ${hw.name} (${hw.uuid}), engine ${hw.health.status}\n`);
    });

  devices.command('remove <name>')
    .description('remove a device (admin); refused while a lease holds it')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (name: string, o: { cloudlet?: string }) => {
      await (await api(o.cloudlet)).removeDevice(name);
      out(`removed ${name}\n`);
    });

  const lease = program.command('lease').description('reserve devices for a time window (Blazar leases)');

  lease.command('create <name>')
    .description('reserve device(s) matching a machine name or filter')
    .option('--machine-name <name>', 'e.g. raspberrypi4-64')
    .option('--filter <json>', 'resource_properties filter, e.g. \'[">=", "$memory_mb", 4096]\'')
    .option('--count <n>', 'how many devices', '1')
    .option('--start <date>', '"YYYY-MM-DD HH:MM" (UTC) or now', 'now')
    .option('--end <date>', '"YYYY-MM-DD HH:MM" (UTC)')
    .option('--minutes <n>', 'length of the lease (instead of --end)')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o: { machineName?: string; filter?: string; count: string; start: string; end?: string; minutes?: string; cloudlet?: string; json?: boolean }) => {
      if (!o.end && !o.minutes) throw new CloudletError('BadInput', 'give --end DATE or --minutes N');
      const count = Number(o.count);
      const d = await api(o.cloudlet);
      const l = await d.createLease({
        name, machineName: o.machineName, filter: o.filter, min: count, max: count,
        start: o.start === 'now' ? 'now' : parseDate(o.start), end: o.end ? parseDate(o.end) : undefined,
        minutes: o.minutes !== undefined ? Number(o.minutes) : undefined,
      });
      if (o.json) { asJson(l); return; }
      out(leaseRows([l], await deviceNames(d)));
      out(`reservation id (for containers): ${l.reservations[0].id}\n`);
    });

  lease.command('list')
    .description('your project\'s leases')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .option('--json', 'machine-readable output')
    .action(async (o: { cloudlet?: string; json?: boolean }) => {
      const d = await api(o.cloudlet);
      const leases = await d.listLeases();
      if (o.json) { asJson(leases); return; }
      out(leaseRows(leases, await deviceNames(d)));
    });

  lease.command('show <lease>')
    .description('one lease (id or name): reservations, events, degraded state')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, o: { cloudlet?: string; json?: boolean }) => {
      const d = await api(o.cloudlet);
      const l = await findLease(d, ref);
      if (o.json) { asJson(l); return; }
      out(leaseRows([l], await deviceNames(d)));
      for (const r of l.reservations) out(`reservation ${r.id}: ${r.status}, ${r.min}-${r.max} device(s) ${r.resource_properties}\n`);
      for (const e of l.events) out(`event ${e.event_type} at ${e.time.slice(0, 19).replace('T', ' ')}: ${e.status}\n`);
    });

  lease.command('extend <lease>')
    .description('move the end of a lease (refused with the reason when a device is reserved after it)')
    .option('--end <date>', 'new end "YYYY-MM-DD HH:MM" (UTC)')
    .option('--minutes <n>', 'add this many minutes to the current end')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (ref: string, o: { end?: string; minutes?: string; cloudlet?: string }) => {
      const d = await api(o.cloudlet);
      const l = await findLease(d, ref);
      if (!o.end && !o.minutes) throw new CloudletError('BadInput', 'give --end DATE or --minutes N');
      const end = o.end ? parseDate(o.end) : new Date(Date.parse(l.end_date + 'Z') + Number(o.minutes) * 60_000);
      const n = await d.extendLease(l.id, end, !o.end);
      out(`lease ${n.name} now ends ${n.end_date.slice(0, 19).replace('T', ' ')} UTC\n`);
    });

  lease.command('end <lease>')
    .description('end a lease now: its containers are stopped and removed')
    .option('--delete', 'also forget the lease')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (ref: string, o: { delete?: boolean; cloudlet?: string }) => {
      const d = await api(o.cloudlet);
      const l = await findLease(d, ref);
      if (o.delete) { await d.deleteLease(l.id); out(`lease ${l.name} ended and deleted\n`); return; }
      const n = l.status === 'PENDING' ? (await d.deleteLease(l.id), { ...l, status: 'DELETED' }) : await d.endLease(l.id);
      out(`lease ${n.name} ${n.status}\n`);
    });

  const container = program.command('container').description('containers on reserved devices (Zun)');

  container.command('run <image> [command...]')
    .description('run a container on a device of your lease (put -- before a command that has options)')
    .option('--lease <lease>', 'lease id or name (its first reservation)')
    .option('--reservation <id>', 'reservation id (instead of --lease)')
    .option('--name <name>', 'container name')
    .option('-e, --env <key=value>', 'environment variable (repeatable)', collect, [])
    .option('-p, --port <port>', 'exposed port, e.g. 8080/tcp (repeatable)', collect, [])
    .option('--device <name>', 'which reserved device, when the lease holds several')
    .option('--no-wait', 'return at once instead of waiting until it runs')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .option('--json', 'machine-readable output')
    .action(async (image: string, command: string[], o: { lease?: string; reservation?: string; name?: string; env: string[]; port: string[]; device?: string; wait: boolean; cloudlet?: string; json?: boolean }) => {
      const d = await api(o.cloudlet);
      const reservationId = o.reservation ?? (o.lease ? (await findLease(d, o.lease)).reservations[0]?.id : undefined);
      if (!reservationId) throw new CloudletError('BadInput', 'give --lease NAME or --reservation ID');
      const environment: Record<string, string> = {};
      for (const e of o.env) {
        const i = e.indexOf('=');
        if (i <= 0) throw new CloudletError('BadInput', `--env wants KEY=VALUE, got ${e}`);
        environment[e.slice(0, i)] = e.slice(i + 1);
      }
      let c = await d.runContainer({ reservationId, image, name: o.name, command: command.length ? command : undefined, environment, exposedPorts: o.port, device: o.device });
      if (o.wait) c = await d.waitContainer(c.uuid, ['Running', 'Stopped']);
      if (o.json) { asJson(c); return; }
      out(containerRows([c]));
    });

  container.command('list')
    .description('your project\'s containers')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .option('--json', 'machine-readable output')
    .action(async (o: { cloudlet?: string; json?: boolean }) => {
      const cs = await (await api(o.cloudlet)).listContainers();
      if (o.json) { asJson(cs); return; }
      out(containerRows(cs));
    });

  container.command('logs <container>')
    .description('a container\'s output')
    .option('--tail <n>', 'only the last N lines')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (ref: string, o: { tail?: string; cloudlet?: string }) => {
      out(await (await api(o.cloudlet)).containerLogs(ref, { tail: o.tail !== undefined ? Number(o.tail) : undefined }));
    });

  container.command('exec <container> <command...>')
    .description('run a command in a running container; exits with its exit code')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (ref: string, command: string[], o: { cloudlet?: string }) => {
      const quoted = command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
      const r = await (await api(o.cloudlet)).execute(ref, quoted);
      out(r.output);
      if (r.exit_code) process.exitCode = r.exit_code;
    });

  container.command('rm <container>')
    .description('stop and remove a container')
    .option('--cloudlet <name|url>', 'which saved cloudlet')
    .action(async (ref: string, o: { cloudlet?: string }) => {
      await (await api(o.cloudlet)).deleteContainer(ref, { force: true });
      out(`removed ${ref}\n`);
    });
}
