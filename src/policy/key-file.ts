/**
 * The keys file (and the price overrides, PRICES_FILE, which go with it) over time: loaded at
 * start, reloaded on change or SIGHUP, one reload at a time and in order (the last reads the files
 * as they finally are). A reload that finds either file invalid keeps the keys and prices in use
 * and reports every problem; one that finds both texts unchanged does nothing. Used alike by a
 * single process and by a cluster primary.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Registry } from '../providers/index.js';
import { warn } from '../observe/warn.js';
import { allProblems, ConfigFileError } from '../config-file-error.js';
import { loadPrices, pricesWith } from '../prices/prices.js';
import type { PriceTable } from '../prices/table.js';
import { keyWarnings, loadKeyFileText, parseKeyFile, periodWarnings, spendPeriods, type BudgetPeriod, type VirtualKey } from './keys.js';

/** What a keys file (and price overrides) hold: the keys and prices, and the texts they came from. */
export interface Loaded {
  readonly keys: VirtualKey[];
  readonly prices: PriceTable;
  readonly text: string;
  /** null: no PRICES_FILE. */
  readonly pricesText: string | null;
}

export type ReloadResult = ({ readonly outcome: 'reloaded' } & Loaded) | { readonly outcome: 'unchanged' | 'failed' };

export interface ReloadOptions {
  /** A file whose text is what was loaded last is left alone, silently (a change event that changed nothing). */
  readonly onlyIfChanged: boolean;
  /** Where the keys are in use, for the messages (e.g. "by 4 workers"). */
  readonly where?: string;
}

export class KeyFile {
  private reloading: Promise<ReloadResult> = Promise.resolve({ outcome: 'unchanged' });
  /** What the files held when they were last refused, until they load again. */
  private refused: string | null = null;
  /** The spend period of each key in use, by digest: a reload that changes one says so. */
  private periods: ReadonlyMap<string, BudgetPeriod> = new Map();

  constructor(
    readonly path: string,
    private readonly registry: Registry,
    /** PRICES_FILE (null: the built-in prices alone). */
    readonly pricesPath: string | null,
    /** The texts of the keys and prices in use. */
    public text: string,
    public pricesText: string | null,
    private keyCount: number,
  ) {}

  /** Loads and validates the files at start; throws ConfigFileError listing every problem. */
  static async open(path: string, registry: Registry, pricesPath: string | null): Promise<{ file: KeyFile } & Loaded> {
    const loaded = await KeyFile.read(path, registry, pricesPath);
    for (const warning of keyWarnings(loaded.keys)) warn(warning);
    const file = new KeyFile(path, registry, pricesPath, loaded.text, loaded.pricesText, loaded.keys.length);
    file.periods = spendPeriods(loaded.keys);
    return { file, ...loaded };
  }

  /** Reads both files whatever the other holds: an operator fixes every problem of both in one pass. */
  private static async read(path: string, registry: Registry, pricesPath: string | null): Promise<Loaded> {
    const [keys, prices] = await Promise.allSettled([loadKeyFileText(path, registry), loadPrices(pricesPath, Object.keys(registry))]);
    if (keys.status === 'fulfilled' && prices.status === 'fulfilled') {
      return { keys: keys.value.keys, text: keys.value.text, prices: prices.value.table, pricesText: prices.value.text };
    }
    const failures = [keys, prices].flatMap((settled): unknown[] => (settled.status === 'rejected' ? [settled.reason] : []));
    const unexpected = failures.find((reason) => !(reason instanceof ConfigFileError));
    if (unexpected !== undefined) throw unexpected;
    throw allProblems(failures as ConfigFileError[]);
  }

  /** What the files hold now, as one text (a file that cannot be read, as its error's code). */
  private async held(): Promise<string> {
    const text = (path: string | null): Promise<string> => (path === null ? Promise.resolve('') : readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => `\0${err.code ?? 'error'}`));
    const [keys, prices] = await Promise.all([text(this.path), text(this.pricesPath)]);
    return `${keys}\0\0${prices}`;
  }

  /** Keys and prices from texts this file already accepted (a cluster worker gets them from its primary). */
  parse(text: string, pricesText: string | null): { keys: VirtualKey[]; prices: PriceTable } {
    return { keys: parseKeyFile(text, this.path, this.registry), prices: pricesWith(pricesText, this.pricesPath, Object.keys(this.registry)) };
  }

  reload(why: string, options: ReloadOptions): Promise<ReloadResult> {
    this.reloading = this.reloading.then(() => this.readAgain(why, options));
    return this.reloading;
  }

  private async readAgain(why: string, options: ReloadOptions): Promise<ReloadResult> {
    const where = options.where === undefined ? '' : ` ${options.where}`;
    // Files refused as they stand are refused once: anything else in their folder (a log, stderr
    // redirected there) changing would otherwise say it again, and a warning written to a file in
    // that folder would set off the next. Files as they are in use are not parsed again.
    const held = await this.held();
    const inUse = held === `${this.text}\0\0${this.pricesText ?? ''}`;
    if (inUse && this.refused !== null) {
      // Back as they are in use (an edit undone): said, since stderr's last word was the refusal.
      this.refused = null;
      warn(`keys file back as it is in use (${why}): the ${this.keyCount} virtual key${this.keyCount === 1 ? '' : 's'} in use stay; nothing was refused`);
    }
    if (options.onlyIfChanged && (inUse || held === this.refused)) return { outcome: 'unchanged' };
    try {
      const loaded = await KeyFile.read(this.path, this.registry, this.pricesPath);
      if (options.onlyIfChanged && loaded.text === this.text && loaded.pricesText === this.pricesText) return { outcome: 'unchanged' };
      this.text = loaded.text;
      this.pricesText = loaded.pricesText;
      this.keyCount = loaded.keys.length;
      this.refused = null;
      const prices = this.pricesPath === null ? '' : ` and prices from ${this.pricesPath}`;
      warn(`keys reloaded (${why}): ${this.keyCount} virtual key${this.keyCount === 1 ? '' : 's'}${prices} in use${where}`);
      for (const warning of [...keyWarnings(loaded.keys), ...periodWarnings(this.periods, loaded.keys)]) warn(warning);
      this.periods = spendPeriods(loaded.keys);
      return { outcome: 'reloaded', ...loaded };
    } catch (err) {
      const message = err instanceof ConfigFileError ? err.message : (err as Error).message;
      this.refused = held;
      warn(`keys NOT reloaded (${why}); still using the previous ${this.keyCount}${this.pricesPath === null ? '' : ' and their prices'}:\n${message}`);
      return { outcome: 'failed' };
    }
  }
}

/**
 * Calls `onChange` (100 ms after a burst of events, at most 500 ms after its first) when anything changes in the
 * folder of a file (the keys file, the price file), or in the folder of the file it links to.
 * Folders, not the file: editors and deploy tools replace the file (a rename), and Kubernetes swaps
 * a `..data` symlink; a watch on the old inode sees neither. Each folder is watched once, so files
 * side by side make one reload (and one warning when it is refused). The caller compares contents,
 * so unrelated changes in the folder cost a read and nothing else.
 *
 * A watch follows the folder it began on, so every `checkEveryMs` each file is looked at again
 * (what it links to, its inode, size and time) with each folder's inode: a folder replaced, or a
 * symlink above it swapped, is watched anew and the files read; so is a change a watch missed.
 */
export function watchKeyFiles(files: readonly string[], onChange: () => void, checkEveryMs = 2000): () => void {
  let timer: NodeJS.Timeout | undefined;
  let latest = 0;
  // 100 ms after the last event (an in-place edit truncates, then writes: read between the two, the
  // file is half there), but never more than 500 ms after the first: a folder that never goes
  // quiet (a log or stdout written there) would otherwise put a change off forever.
  const changed = (): void => {
    const now = Date.now();
    if (timer === undefined) latest = now + 500;
    else clearTimeout(timer);
    timer = setTimeout(
      () => {
        timer = undefined;
        onChange();
      },
      Math.max(0, Math.min(100, latest - now)),
    );
  };
  let watchers: FSWatcher[] = [];
  const arm = (folders: readonly string[]): void => {
    for (const watcher of watchers) watcher.close();
    watchers = [];
    for (const folder of folders) {
      try {
        const watcher = watch(folder, { persistent: false }, changed);
        watcher.on('error', (err) => warn(`stopped watching ${folder} (${err.message}); changes to ${files.join(' or ')} are now seen within ${checkEveryMs / 1000} s, or reload keys with SIGHUP`));
        watchers.push(watcher);
      } catch (err) {
        // A folder gone mid-swap: the next look watches it once it is back.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        warn(`cannot watch ${folder} for changes to ${files.join(' or ')} (${(err as Error).message}); changes are seen within ${checkEveryMs / 1000} s, or reload keys with SIGHUP`);
      }
    }
  };
  let closed = false;
  let nextLook: NodeJS.Timeout | undefined;
  // What the folders watched were, and what the files were, at the last look. The first look reads
  // the files too: a change between loading them and this watch beginning is not lost.
  let watched = '';
  let seen = '';
  const look = async (): Promise<void> => {
    const now = await whereFilesAre(files);
    if (closed) return;
    // The snapshot before the watch: a swap in between makes the next look differ, and watch again.
    if (now.folders !== watched) arm(now.list);
    watched = now.folders;
    if (now.folders + now.files !== seen) changed();
    seen = now.folders + now.files;
    nextLook = setTimeout(() => void look(), checkEveryMs);
    nextLook.unref();
  };
  void look();
  return () => {
    closed = true;
    clearTimeout(timer);
    clearTimeout(nextLook);
    for (const watcher of watchers) watcher.close();
  };
}

/** The folders to watch for these files (each file's, and the folder of the file it links to), and what each folder and file is. */
async function whereFilesAre(files: readonly string[]): Promise<{ list: string[]; folders: string; files: string }> {
  const what = (path: string, whole: boolean): Promise<string> =>
    stat(path).then(
      (found) => (whole ? `${found.dev}:${found.ino}:${found.size}:${found.mtimeMs}` : `${found.dev}:${found.ino}`),
      (err: NodeJS.ErrnoException) => err.code ?? 'error',
    );
  const list = new Set<string>();
  const described: string[] = [];
  for (const file of files) {
    const path = resolve(file);
    list.add(dirname(path));
    // null: not there (yet); the folder of the path is watched meanwhile
    const real = await realpath(path).catch(() => null);
    if (real !== null) list.add(dirname(real));
    described.push(`${path} -> ${real ?? '?'} ${await what(path, true)}`);
  }
  const folders = await Promise.all([...list].map(async (folder) => `${folder} ${await what(folder, false)}`));
  return { list: [...list], folders: `${folders.join('\n')}\n`, files: described.join('\n') };
}
