/**
 * The `cloudlet` command. Each command group lives in its own file under commands/ and exports
 * `register(program)`; this file only wires them up and turns errors into one clear line + exit code.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command } from 'commander';
import { projectRoot } from '../common/paths';
import { describeError, isCloudletError } from '../common/errors';
import * as guest from './commands/guest';
import * as base from './commands/base';
import * as sandbox from './commands/sandbox';
import * as overlay from './commands/overlay';
import * as build from './commands/build';
import * as synthesize from './commands/synthesize';
import * as serve from './commands/serve';
import * as remote from './commands/remote';
import * as region from './commands/region';
import * as publish from './commands/publish';
import * as devices from './commands/devices';
import * as service from './commands/service';

function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function createProgram(): Command {
  const program = new Command('cloudlet')
    .description('Cloudlet Toolkit: base VMs, sandboxes, overlays, synthesis, handoff and edge devices')
    .version(packageVersion())
    .showHelpAfterError();
  // Order matters only where a group extends another's command (publish adds to `overlay`).
  for (const group of [guest, base, sandbox, overlay, build, synthesize, serve, remote, region, publish, devices, service]) {
    group.register(program);
  }
  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await createProgram().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`cloudlet: ${describeError(e)}\n`);
    if (process.env.CLOUDLET_LOG === 'debug' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exitCode = isCloudletError(e, 'Cancelled') ? 130 : isCloudletError(e) && e.code === 'BadInput' ? 2 : 1;
    // The error is said: a timer of the failed work (a wait for a guest that is gone) must not keep
    // the command alive until its own deadline. unref: a process that ends by itself is not cut short.
    setTimeout(() => process.exit(), 1000).unref();
  }
}

if (require.main === module || process.env.CLOUDLET_CLI_MAIN === '1') void main();
