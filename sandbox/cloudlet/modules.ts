/**
 * The API modules a daemon mounts besides identity and cloudlet (jobs/events). One static list so
 * the CLI bundle includes them; a module file lands here with one import line.
 */
import type { ApiModule } from './context';

export function builtinModules(): ApiModule[] {
  return [];
}
