import * as net from 'net';
import type { Command } from 'commander';
import { CloudletError } from '../../common/errors';
import { SandboxManager, type PortRequest, type SandboxInfo } from '../../sandboxes/sandboxManager';
import { progressLine } from './base';
import { parseLaunchDigestsJob, runLaunchDigestsJob } from '../../handoff/launchDigests';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** "8080" -> guest 8080 on a free host port; "80:18080" -> guest 80 on 127.0.0.1:18080. */
function parsePort(s: string): PortRequest {
  const m = /^(\d+)(?::(\d+))?$/.exec(s);
  if (!m) throw new CloudletError('BadInput', `--port ${s}: use GUEST or GUEST:HOST`);
  return m[2] ? { guest: Number(m[1]), host: Number(m[2]) } : Number(m[1]);
}

const portsText = (s: SandboxInfo) => s.ports.map((p) => `127.0.0.1:${p.host}->${p.guest}`).join(', ') || '-';

/**
 * Runs a command with a SandboxManager on CLOUDLET_HOME: first reconciles QEMU processes left by an
 * earlier process (and says what it did), at the end lets go of connections (VMs keep running).
 */
async function withManager<T>(fn: (m: SandboxManager) => Promise<T>): Promise<T> {
  const m = new SandboxManager();
  for (const r of await m.adopt()) if (r.action !== 'none' && r.action !== 'attached') process.stderr.write(`cloudlet: ${r.message}\n`);
  try { return await fn(m); } finally { m.close(); }
}

function print(s: SandboxInfo, json?: boolean): void {
  if (json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
  else process.stdout.write(`${s.id}  ${s.status}  base ${s.baseId.slice(0, 12)}  pid ${s.pid ?? '-'}  ports ${portsText(s)}${s.resumeMs !== undefined ? `  resumed in ${s.resumeMs} ms` : ''}\n`);
}

/** `cloudlet sandbox resume|list|console|exec|copy|pause|unpause|stop|delete|port`. */
export function register(program: Command): void {
  const sb = program.command('sandbox').description('sandbox VMs resumed from base VMs (local QEMU)');

  sb.command('resume <base>')
    .description('resume a base in a new sandbox (no reboot); with --name of a stopped sandbox, continue it')
    .option('--name <name>', 'sandbox name (default sb-xxxxxx)')
    .option('--port <guest[:host]>', 'extra guest TCP port to forward to 127.0.0.1 (repeat)', collect, [])
    .option('--json', 'print JSON')
    .action((ref: string, o: { name?: string; port: string[]; json?: boolean }) => withManager(async (m) => {
      const s = await m.resume(ref, { name: o.name, ports: o.port.map(parsePort), onProgress: o.json ? undefined : progressLine });
      print(s, o.json);
    }));

  sb.command('list').description('list sandboxes').option('--json', 'print JSON').action((o: { json?: boolean }) => withManager(async (m) => {
    const all = m.list();
    if (o.json) { process.stdout.write(JSON.stringify(all, null, 2) + '\n'); return; }
    if (!all.length) { process.stdout.write('no sandboxes\n'); return; }
    process.stdout.write('SANDBOX          STATUS    BASE          PID      PORTS\n');
    for (const s of all) process.stdout.write(`${s.id.padEnd(16)} ${s.status.padEnd(9)} ${s.baseId.slice(0, 12)}  ${String(s.pid ?? '-').padEnd(8)} ${portsText(s)}\n`);
  }));

  sb.command('exec <sandbox> <command...>')
    .description('run a shell command in the guest (through the guest agent); exits with its status')
    .option('--timeout <s>', 'seconds before giving up', '60')
    .option('--json', 'print JSON {stdout, stderr, exitCode}')
    .action((id: string, cmd: string[], o: { timeout: string; json?: boolean }) => withManager(async (m) => {
      const r = await m.exec(id, cmd.join(' '), { timeoutMs: Number(o.timeout) * 1000 });
      if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
      else { process.stdout.write(r.stdout); process.stderr.write(r.stderr); }
      process.exitCode = r.exitCode;
    }));

  sb.command('copy <sandbox> <hostPath> <guestPath>').description('copy a host file into the guest')
    .action((id: string, hostPath: string, guestPath: string) => withManager(async (m) => {
      await m.copyIn(id, hostPath, guestPath);
      process.stdout.write(`copied ${hostPath} to ${id}:${guestPath}\n`);
    }));

  sb.command('pause <sandbox>').description('pause the VM').option('--json', 'print JSON')
    .action((id: string, o: { json?: boolean }) => withManager(async (m) => print(await m.pause(id), o.json)));
  sb.command('unpause <sandbox>').description('continue a paused VM').option('--json', 'print JSON')
    .action((id: string, o: { json?: boolean }) => withManager(async (m) => print(await m.unpause(id), o.json)));

  sb.command('port <sandbox> <guest[:host]>').description('forward one more guest port to 127.0.0.1 while it runs').option('--json', 'print JSON')
    .action((id: string, spec: string, o: { json?: boolean }) => withManager(async (m) => {
      const p = parsePort(spec);
      print(await m.addPort(id, typeof p === 'number' ? p : p.guest, typeof p === 'number' ? undefined : p.host), o.json);
    }));

  sb.command('stop <sandbox>').description('save the state and end QEMU (resume BASE --name ID continues it)')
    .option('--no-save', 'do not save the state').option('--json', 'print JSON')
    .action((id: string, o: { save: boolean; json?: boolean }) => withManager(async (m) => print(await m.stop(id, { save: o.save }), o.json)));

  sb.command('delete <sandbox>').description('end QEMU and remove the sandbox').option('--json', 'print JSON')
    .action((id: string, o: { json?: boolean }) => withManager(async (m) => {
      const r = await m.delete(id);
      process.stdout.write(o.json ? JSON.stringify({ id: r, deleted: true }) + '\n' : `deleted ${r}\n`);
    }));

  // Not for users: the daemon runs it at nice 19 after a synthesis (handoff/launchDigests.ts).
  sb.command('launch-digests <job>', { hidden: true })
    .description('compute the handoff round 0 digests of a synthesized VM (internal)')
    .action(async (job: string) => { await runLaunchDigestsJob(parseLaunchDigestsJob(job)); });

  sb.command('console <sandbox>')
    .description('attach this terminal to the serial console (Ctrl-] detaches)')
    .action((id: string) => withManager(async (m) => {
      const s = m.get(id);
      if (s.status !== 'running' && s.status !== 'paused') throw new CloudletError('Conflict', `sandbox '${id}' is ${s.status}`);
      await attachConsole(s.consoleSocket);
    }));
}

/** Pipes stdin/stdout to the console socket; raw mode on a TTY, Ctrl-] (0x1d) to leave. */
function attachConsole(socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const tty = process.stdin.isTTY;
    const done = () => {
      if (tty) process.stdin.setRawMode(false);
      process.stdin.pause();
      sock.destroy();
      resolve();
    };
    sock.on('error', (e) => reject(new CloudletError('Unavailable', `cannot attach to ${socketPath}: ${e.message}`, { hint: 'another console may be attached' })));
    sock.once('connect', () => {
      if (tty) {
        process.stderr.write('[attached to the serial console; Ctrl-] detaches]\r\n');
        process.stdin.setRawMode(true);
      }
      sock.write('\n');
      process.stdin.on('data', (d: Buffer) => {
        if (tty && d.includes(0x1d)) { done(); return; }
        sock.write(d);
      });
      // Without a TTY (scripts): send stdin, give the guest a moment to answer, then leave.
      process.stdin.once('end', () => setTimeout(done, 1500));
      process.stdin.resume();
    });
    sock.on('data', (d: Buffer) => process.stdout.write(d));
    sock.once('close', () => done());
  });
}
