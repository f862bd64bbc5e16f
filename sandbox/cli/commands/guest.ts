import type { Command } from 'commander';

/** `cloudlet` commands of group "guest" (not yet implemented). */
export function register(_program: Command): void {}
