/**
 * Every process a test starts ends with its test file. A test that fails before its own clean-up
 * (an assertion between start and stop) would otherwise leave the child running, its pipes
 * holding the file's process open, and the whole suite waiting for it.
 */
import type { ChildProcess } from 'node:child_process';
import { after } from 'node:test';

const running = new Set<ChildProcess>();
/** Children started detached, each the leader of its own process group (npm and what it started). */
const childIsGroupLeader = new WeakSet<ChildProcess>();

// Registered once per test file (each file is its own process): runs after its last test, pass or fail.
after(() => {
  for (const child of running) killTree(child);
});

function killTree(child: ChildProcess): void {
  try {
    // A detached child leads its own process group (npm and what it started): end all of it.
    if (child.pid !== undefined && childIsGroupLeader.has(child)) process.kill(-child.pid, 'SIGKILL');
    else child.kill('SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Ends `child` (and, when `group`, its whole process group) when the test file is done. */
export function endWithFile<T extends ChildProcess>(child: T, group = false): T {
  if (group) childIsGroupLeader.add(child);
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}
