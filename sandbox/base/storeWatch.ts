/**
 * Notices entries appearing in or leaving a folder through other processes (the CLI writing bases
 * into a running daemon's data folder). fs.watch makes it prompt (debounced: a bundle arrives as
 * a burst of events); a periodic listing is the safety net (fs.watch can miss events on some file
 * systems, and the folder may not exist yet). `onChange` runs only when the sorted entry names
 * differ from the last listing seen, so a rescan that finds nothing new costs one readdir.
 *
 *   const w = watchListing(paths.bases, () => sync(), { debounceMs: 300, rescanMs: 10_000 });
 *   w.close();
 */
import * as fs from 'fs';

export interface ListingWatch {
  /** Lists now and calls onChange if the listing changed. */
  check(): void;
  close(): void;
}

function listing(dir: string): string {
  try { return fs.readdirSync(dir).sort().join('\n'); } catch { return ''; }
}

export function watchListing(dir: string, onChange: () => void, o: { debounceMs?: number; rescanMs?: number } = {}): ListingWatch {
  const debounceMs = o.debounceMs ?? 300;
  let last = listing(dir);
  let watcher: fs.FSWatcher | undefined;
  let pending: NodeJS.Timeout | undefined;
  let closed = false;

  const check = () => {
    if (closed) return;
    ensureWatcher();
    const now = listing(dir);
    if (now === last) return;
    last = now;
    onChange();
  };
  const soon = () => {
    if (pending) clearTimeout(pending);
    pending = setTimeout(() => { pending = undefined; check(); }, debounceMs);
    pending.unref();
  };
  function ensureWatcher(): void {
    if (watcher || closed) return;
    try {
      watcher = fs.watch(dir, { persistent: false }, soon);
      // The folder removed or unwatchable: fall back to the rescans, which watch again when they can.
      watcher.on('error', () => { watcher?.close(); watcher = undefined; });
    } catch { /* not there yet: the next rescan tries again */ }
  }

  ensureWatcher();
  const timer = setInterval(check, o.rescanMs ?? 10_000);
  timer.unref();
  return {
    check,
    close() {
      closed = true;
      clearInterval(timer);
      if (pending) clearTimeout(pending);
      watcher?.close();
    },
  };
}
