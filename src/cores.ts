/**
 * How many cores this process may use: the CPUs it may run on, and no more than its cgroup's CPU
 * quota (a container's `--cpus`, a Kubernetes CPU limit, a systemd `CPUQuota`). Node 20's
 * `availableParallelism` counts the CPUs alone, so `GATEWAY_WORKERS=auto` in a container limited
 * to 2 CPUs on a 64-core host would start 64 workers sharing 2 CPUs' time.
 *
 * Read once at start (synchronous reads of a few small files), never per request.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

/** Where the files are: a test points these at a folder of its own. */
export interface CgroupFiles {
  /** The cgroup filesystem's mount (`/sys/fs/cgroup`). */
  readonly root: string;
  /** The text of `/proc/self/cgroup`. */
  readonly membership: string | null;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Cores a quota of `quota` µs of CPU time every `period` µs allows (a fraction rounds up), or null for none. */
function quotaCores(quota: number, period: number): number | null {
  if (!Number.isFinite(quota) || !Number.isFinite(period) || quota <= 0 || period <= 0) return null;
  return Math.max(1, Math.ceil(quota / period));
}

/** cgroup v2: `cpu.max` holds "<quota> <period>" or "max <period>". */
function v2Cores(folder: string): number | null {
  const text = readOrNull(join(folder, 'cpu.max'));
  if (text === null) return null;
  const [quota, period] = text.trim().split(/\s+/);
  return quota === 'max' ? null : quotaCores(Number(quota), Number(period));
}

/** cgroup v1: `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`. */
function v1Cores(folder: string): number | null {
  const quota = readOrNull(join(folder, 'cpu.cfs_quota_us'));
  const period = readOrNull(join(folder, 'cpu.cfs_period_us'));
  return quota === null || period === null ? null : quotaCores(Number(quota.trim()), Number(period.trim()));
}

/** `/a/b/c` and each folder above it: a parent's quota limits its children too. */
function selfAndParents(path: string): string[] {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.' && part !== '..');
  const paths: string[] = [];
  for (let n = parts.length; n >= 0; n--) paths.push(parts.slice(0, n).join('/'));
  return paths;
}

/**
 * The smallest CPU quota over this process's cgroup and its parents, in whole cores, or null when
 * none is set (or none can be read: not Linux, no cgroup filesystem).
 */
export function cgroupCores(files: CgroupFiles): number | null {
  if (files.membership === null) return null;
  const quotas: Array<number | null> = [];
  for (const line of files.membership.split('\n')) {
    // "hierarchy-id:controllers:path"; the path may itself hold colons.
    const match = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (match === null) continue;
    const [, id, controllers = '', path = '/'] = match;
    if (id === '0' && controllers === '') {
      for (const folder of selfAndParents(path)) quotas.push(v2Cores(join(files.root, folder)));
    } else if (controllers.split(',').includes('cpu')) {
      // Mounted under its own name (`cpu,cpuacct`), or as `cpu`: the first that is there.
      const base = [controllers, 'cpu'].map((mount) => join(files.root, mount)).find((folder) => readOrNull(join(folder, 'cpu.cfs_period_us')) !== null);
      if (base !== undefined) for (const folder of selfAndParents(path)) quotas.push(v1Cores(join(base, folder)));
    }
  }
  const set = quotas.filter((cores) => cores !== null);
  return set.length === 0 ? null : Math.min(...set);
}

/** The cores `GATEWAY_WORKERS=auto` starts one worker for. */
export function usableCores(files: CgroupFiles = { root: '/sys/fs/cgroup', membership: readOrNull('/proc/self/cgroup') }): number {
  const cpus = availableParallelism();
  const quota = cgroupCores(files);
  return quota === null ? cpus : Math.min(cpus, quota);
}
