import type { Command } from 'commander';

/** `cloudlet` commands of group "build" (not yet implemented). */
export function register(_program: Command): void {}
