/**
 * Preloaded into a gateway by the benchmark (`node --import …/loop-delay.js dist/main.js`): the
 * process's event-loop delay, from perf_hooks.monitorEventLoopDelay, the CPU time it used (and of that, in the kernel) and the
 * time its garbage collections took. On SIGUSR2 it writes what it saw since the last signal to
 * stderr as one `loop-delay {…}` line (milliseconds) and starts over.
 */
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

const histogram = monitorEventLoopDelay({ resolution: 1 });
histogram.enable();
let since = process.cpuUsage();
// Pauses of the young generation's scavenges, and of the rest (mark-compact, incremental marking steps).
let gcMinor = 0;
let gcOther = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) gcMinor += entry.duration;
    else gcOther += entry.duration;
  }
}).observe({ entryTypes: ['gc'] });
process.on('SIGUSR2', () => {
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
  const used = process.cpuUsage(since);
  since = process.cpuUsage();
  const cpu = Math.round((used.user + used.system) / 10) / 100;
  const system = Math.round(used.system / 10) / 100;
  const gc = { minor: Math.round(gcMinor), other: Math.round(gcOther) };
  gcMinor = 0;
  gcOther = 0;
  process.stderr.write(`loop-delay ${JSON.stringify({ p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max), cpu, system, gc })}\n`);
  histogram.reset();
});
