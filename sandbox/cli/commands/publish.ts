import type { Command } from 'commander';

/** `cloudlet` commands of group "publish" (not yet implemented). */
export function register(_program: Command): void {}
