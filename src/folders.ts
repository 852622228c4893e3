import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Makes `folder` and the folders above it that are missing, one at a time (`mkdir -p`). Node's own
 * `mkdir(…, { recursive: true })` never returns where a folder cannot be made inside one that
 * exists (`/proc/nope`: ENOENT each time it tries again), and start-up would spin there.
 */
export async function makeFolders(folder: string): Promise<void> {
  try {
    await mkdir(folder);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // There already: done if it is a folder (the error, EEXIST, says it is not).
    if (code === 'EEXIST' && (await stat(folder).catch(() => null))?.isDirectory() === true) return;
    const parent = dirname(folder);
    if (code !== 'ENOENT' || parent === folder) throw err;
    await makeFolders(parent);
  }
  // Its parent is there now: made, or the reason it cannot be (ENOENT again under /proc).
  await mkdir(folder).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST' || (await stat(folder).catch(() => null))?.isDirectory() !== true) throw err;
  });
}
