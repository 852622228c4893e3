import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cgroupCores, usableCores } from '../src/cores.js';

const root = mkdtempSync(join(tmpdir(), 'cgroup-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A fake cgroup filesystem: `files` maps paths under a fresh root to their text. */
function cgroupFs(files: Record<string, string>): string {
  const folder = mkdtempSync(join(root, 'fs-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(folder, path, '..'), { recursive: true });
    writeFileSync(join(folder, path), text);
  }
  return folder;
}

describe('usable cores (GATEWAY_WORKERS=auto)', () => {
  it('cgroup v2: the quota of the process cgroup, a fraction rounded up', () => {
    const fs = cgroupFs({ 'cpu.max': 'max 100000\n', 'kubepods/pod1/cpu.max': '150000 100000\n' });
    assert.equal(cgroupCores({ root: fs, membership: '0::/kubepods/pod1\n' }), 2);
  });

  it('cgroup v2: a parent with a tighter quota limits its child; none set anywhere is no limit', () => {
    const fs = cgroupFs({ 'cpu.max': 'max 100000\n', 'system.slice/cpu.max': '100000 100000\n', 'system.slice/gateway.service/cpu.max': 'max 100000\n' });
    assert.equal(cgroupCores({ root: fs, membership: '0::/system.slice/gateway.service\n' }), 1);
    const free = cgroupFs({ 'cpu.max': 'max 100000\n', 'a/cpu.max': 'max 100000\n' });
    assert.equal(cgroupCores({ root: free, membership: '0::/a\n' }), null);
  });

  it('cgroup v2 in a container: its own cgroup is the root, whatever path the membership names', () => {
    const fs = cgroupFs({ 'cpu.max': '400000 100000\n' });
    assert.equal(cgroupCores({ root: fs, membership: '0::/../../docker/abc\n' }), 4);
    assert.equal(cgroupCores({ root: fs, membership: '0::/\n' }), 4);
  });

  it('cgroup v1: cfs quota and period, under cpu,cpuacct or cpu; -1 is no limit', () => {
    const joined = cgroupFs({ 'cpu,cpuacct/cpu.cfs_period_us': '100000\n', 'cpu,cpuacct/cpu.cfs_quota_us': '-1\n', 'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n', 'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '300000\n' });
    const membership = '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n';
    assert.equal(cgroupCores({ root: joined, membership }), 3);
    const alone = cgroupFs({ 'cpu/cpu.cfs_period_us': '50000\n', 'cpu/cpu.cfs_quota_us': '25000\n' });
    assert.equal(cgroupCores({ root: alone, membership: '3:cpu:/\n' }), 1, 'half a core is one');
    const unlimited = cgroupFs({ 'cpu/cpu.cfs_period_us': '100000\n', 'cpu/cpu.cfs_quota_us': '-1\n' });
    assert.equal(cgroupCores({ root: unlimited, membership: '3:cpu:/\n' }), null);
  });

  it('no cgroup filesystem, no membership or text it cannot read: no limit', () => {
    assert.equal(cgroupCores({ root: join(root, 'none'), membership: '0::/\n1:cpu:/\n' }), null);
    assert.equal(cgroupCores({ root, membership: null }), null);
    const fs = cgroupFs({ 'cpu.max': 'lots of it\n', 'a/cpu.max': '0 100000\n' });
    assert.equal(cgroupCores({ root: fs, membership: 'nonsense\n0::/a\n' }), null);
  });

  it('auto is the fewer of the CPUs the process may run on and its quota', () => {
    const one = cgroupFs({ 'cpu.max': '100000 100000\n' });
    assert.equal(usableCores({ root: one, membership: '0::/\n' }), 1, 'one core of quota, whatever the CPUs');
    const two = cgroupFs({ 'cpu.max': '200000 100000\n' });
    assert.equal(usableCores({ root: two, membership: '0::/\n' }), Math.min(2, availableParallelism()));
    const many = cgroupFs({ 'cpu.max': `${(availableParallelism() + 8) * 100000} 100000\n` });
    assert.equal(usableCores({ root: many, membership: '0::/\n' }), availableParallelism());
    assert.equal(usableCores({ root, membership: null }), availableParallelism());
  });
});
