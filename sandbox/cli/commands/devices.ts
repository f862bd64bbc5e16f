import type { Command } from 'commander';

/** `cloudlet` commands of group "devices" (not yet implemented). */
export function register(_program: Command): void {}
