import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Makes `folder` and the folders above it that are missing, one at a time (`mkdir -p`). Node's own
 * `mkdir(…, { recursive: true })` never returns where a folder cannot be made inside one that
 * exists (`/proc/nope`: ENOENT each time it tries again), and start-up would spin there.
 */
export async function makeFolders(folder: string): Promise<void> {
  try {
    return await madeOrThere(folder);
  } catch (err) {
    const parent = dirname(folder);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === folder) throw err;
  }
  await makeFolders(dirname(folder));
  // Its parent is there now: made, or the reason it cannot be (ENOENT again under /proc), once.
  await madeOrThere(folder);
}

/** Makes `folder`; one already there is fine (EEXIST of anything else is the error). */
async function madeOrThere(folder: string): Promise<void> {
  await mkdir(folder).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST' || (await stat(folder).catch(() => null))?.isDirectory() !== true) throw err;
  });
}
