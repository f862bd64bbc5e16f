/**
 * Minimal leveled logger writing to stderr, so stdout stays for command output (and --json).
 * CLOUDLET_LOG=debug|info|warn|error selects the level.
 */
type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, ...rest: unknown[]): void;
  info(msg: string, ...rest: unknown[]): void;
  warn(msg: string, ...rest: unknown[]): void;
  error(msg: string, ...rest: unknown[]): void;
}

function threshold(): number {
  const l = (process.env.CLOUDLET_LOG || 'info') as Level;
  return ORDER[l] ?? ORDER.info;
}

export function createLogger(scope: string, sink: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const emit = (level: Level, msg: string, rest: unknown[]) => {
    if (ORDER[level] < threshold()) return;
    const extra = rest.length ? ' ' + rest.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join(' ') : '';
    sink(`${new Date().toISOString()} ${level.padEnd(5)} [${scope}] ${msg}${extra}`);
  };
  return {
    debug: (m, ...r) => emit('debug', m, r),
    info: (m, ...r) => emit('info', m, r),
    warn: (m, ...r) => emit('warn', m, r),
    error: (m, ...r) => emit('error', m, r),
  };
}
