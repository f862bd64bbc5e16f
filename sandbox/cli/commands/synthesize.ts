import type { Command } from 'commander';

/** `cloudlet` commands of group "synthesize" (not yet implemented). */
export function register(_program: Command): void {}
