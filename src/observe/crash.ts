/**
 * A bug that escaped (an exception nobody caught, a rejection nobody handled) ends the process,
 * as Node would, but first writes the log entries still pending and saves the state file, within
 * CRASH_FLUSH_MS. Node's own exit loses those entries, and when stdout is a pipe whose reader
 * stalled it never ends: it waits for the stuck write forever (see endProcess), a hung process a
 * supervisor takes for a live one.
 */
import { inspect } from 'node:util';
import { endProcess, savedAtExit } from './log-sinks.js';
import { terminalText } from './terminal.js';

/** How long a crash waits for the log before it ends the process anyway. */
const CRASH_FLUSH_MS = 2000;

/**
 * `closeLog`: writes what the log holds and closes it, within the time given (false: it could
 * not); `save`: saves the state file; `stopServing`: stops taking requests (a cluster primary
 * takes none).
 */
export function endOnUncaught(closeLog: (deadlineMs: number) => Promise<boolean>, save: () => Promise<unknown>, stopServing: () => void = () => {}): void {
  let ending = false;
  process.on('uncaughtException', (err: unknown, origin: string) => {
    // The first says what went wrong; others while the log is written would only repeat it.
    if (ending) return;
    ending = true;
    const what = origin === 'unhandledRejection' ? 'unhandled rejection' : 'uncaught exception';
    // As Node prints it: the stack, and a cause or an error's own fields (code, errno) with it.
    process.stderr.write(`llm-gateway: ${what} (a bug; please report it), exiting: ${terminalText(inspect(err))}\n`);
    // No new request starts in a process about to end; /healthz says 503 meanwhile.
    try {
      stopServing();
    } catch {
      // ending anyway
    }
    // Whatever the flush does (it may fail too, after such a bug), the process ends.
    setTimeout(() => endProcess(1, false), CRASH_FLUSH_MS + 1000);
    Promise.all([closeLog(CRASH_FLUSH_MS), savedAtExit(save(), CRASH_FLUSH_MS)]).then(
      ([flushed, saved]) => endProcess(1, flushed && saved),
      () => endProcess(1, false),
    );
  });
}
