/** Every command group, in one list: registry.ts registers them, the unit test checks them against package.json. */
import type { CommandDef } from './registry';
import { cloudletCommands } from './cloudlets';
import { baseCommands } from './base';
import { sandboxCommands } from './sandbox';
import { overlayCommands } from './overlay';
import { serverCommands } from './server';
import { publishCommands } from './publish';
import { deviceCommands } from './devices';
import { setupCommands } from './setup';

export const commandGroups: CommandDef[][] = [cloudletCommands, baseCommands, sandboxCommands, overlayCommands, serverCommands, publishCommands, deviceCommands, setupCommands];
