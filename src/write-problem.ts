import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Why `file` could not be written (null: nothing seen): it is a folder, a path above it is a file
 * (`/etc/passwd/x.json`), or the nearest folder there is refuses writes (a write makes the rest).
 * Said in those words, where the system's own error says `EEXIST` or `ENOTDIR` of a mkdir.
 */
export async function writeProblem(file: string): Promise<string | null> {
  if ((await stat(file).catch(() => null))?.isDirectory() === true) return 'it is a folder';
  for (let folder = dirname(file); ; folder = dirname(folder)) {
    const found = await stat(folder).catch((err: NodeJS.ErrnoException) => err);
    if (found instanceof Error) {
      if ((found.code === 'ENOENT' || found.code === 'ENOTDIR') && dirname(folder) !== folder) continue;
      return found.message;
    }
    if (!found.isDirectory()) return `${folder} is not a folder`;
    return access(folder, constants.W_OK).then(
      () => null,
      (err: Error) => err.message,
    );
  }
}
