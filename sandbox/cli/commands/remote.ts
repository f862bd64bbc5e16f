import type { Command } from 'commander';

/** `cloudlet` commands of group "remote" (not yet implemented). */
export function register(_program: Command): void {}
