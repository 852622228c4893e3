/**
 * The keys file over time: loaded at start, reloaded on change or SIGHUP, one reload at a time
 * and in order (the last reads the file as it finally is). A reload that finds the file invalid
 * keeps the keys in use and reports every problem; one that finds the text unchanged does nothing.
 * Used alike by a single process and by a cluster primary.
 */
import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Registry } from '../providers/index.js';
import { warn } from '../observe/warn.js';
import { KeyFileError, keyWarnings, loadKeyFileText, parseKeyFile, type VirtualKey } from './keys.js';

export type ReloadResult = { readonly outcome: 'reloaded'; readonly keys: VirtualKey[]; readonly text: string } | { readonly outcome: 'unchanged' | 'failed' };

export interface ReloadOptions {
  /** A file whose text is what was loaded last is left alone, silently (a change event that changed nothing). */
  readonly onlyIfChanged: boolean;
  /** Where the keys are in use, for the messages (e.g. "by 4 workers"). */
  readonly where?: string;
}

export class KeyFile {
  private reloading: Promise<ReloadResult> = Promise.resolve({ outcome: 'unchanged' });

  constructor(
    readonly path: string,
    private readonly registry: Registry,
    /** The text of the keys in use. */
    public text: string,
    private keyCount: number,
  ) {}

  /** Loads and validates the file at start; throws KeyFileError listing every problem. */
  static async open(path: string, registry: Registry): Promise<{ file: KeyFile; keys: VirtualKey[] }> {
    const loaded = await loadKeyFileText(path, registry);
    for (const warning of keyWarnings(loaded.keys)) warn(warning);
    return { file: new KeyFile(path, registry, loaded.text, loaded.keys.length), keys: loaded.keys };
  }

  /** Keys from a text this file already accepted (a cluster worker gets them from its primary). */
  parse(text: string): VirtualKey[] {
    return parseKeyFile(text, this.path, this.registry);
  }

  reload(why: string, options: ReloadOptions): Promise<ReloadResult> {
    this.reloading = this.reloading.then(() => this.readAgain(why, options));
    return this.reloading;
  }

  private async readAgain(why: string, options: ReloadOptions): Promise<ReloadResult> {
    const where = options.where === undefined ? '' : ` ${options.where}`;
    try {
      const loaded = await loadKeyFileText(this.path, this.registry);
      if (options.onlyIfChanged && loaded.text === this.text) return { outcome: 'unchanged' };
      this.text = loaded.text;
      this.keyCount = loaded.keys.length;
      warn(`keys reloaded (${why}): ${this.keyCount} virtual key${this.keyCount === 1 ? '' : 's'} in use${where}`);
      for (const warning of keyWarnings(loaded.keys)) warn(warning);
      return { outcome: 'reloaded', keys: loaded.keys, text: loaded.text };
    } catch (err) {
      const message = err instanceof KeyFileError ? err.message : (err as Error).message;
      warn(`keys NOT reloaded (${why}); still using the previous ${this.keyCount}:\n${message}`);
      return { outcome: 'failed' };
    }
  }
}

/**
 * Calls `onChange` (debounced) when anything changes in the keys file's folder, or in the folder
 * of the file it links to. Folders, not the file: editors and deploy tools replace the file (a
 * rename), and Kubernetes swaps a `..data` symlink; a watch on the old inode sees neither. The
 * caller compares contents, so unrelated changes in the folder cost a read and nothing else.
 */
export function watchKeyFile(file: string, onChange: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    clearTimeout(timer);
    timer = setTimeout(onChange, 100);
  };
  const folders = new Set([dirname(resolve(file))]);
  try {
    folders.add(dirname(realpathSync(file)));
  } catch {
    // not there (yet), or not a link: the folder of the path is enough
  }
  const watchers: FSWatcher[] = [];
  for (const folder of folders) {
    try {
      const watcher = watch(folder, { persistent: false }, changed);
      watcher.on('error', (err) => warn(`stopped watching ${folder} (${err.message}); reload keys with SIGHUP`));
      watchers.push(watcher);
    } catch (err) {
      warn(`cannot watch ${folder} for changes to ${file} (${(err as Error).message}); reload keys with SIGHUP`);
    }
  }
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}
