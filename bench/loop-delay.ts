/**
 * Preloaded into a gateway by the benchmark (`node --import …/loop-delay.js dist/main.js`): the
 * process's event-loop delay, from perf_hooks.monitorEventLoopDelay, and the CPU time it used. On
 * SIGUSR2 it writes what it saw since the last signal to stderr as one `loop-delay {…}` line
 * (milliseconds) and starts over.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

const histogram = monitorEventLoopDelay({ resolution: 1 });
histogram.enable();
let since = process.cpuUsage();
process.on('SIGUSR2', () => {
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
  const used = process.cpuUsage(since);
  since = process.cpuUsage();
  const cpu = Math.round((used.user + used.system) / 10) / 100;
  process.stderr.write(`loop-delay ${JSON.stringify({ p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max), cpu })}\n`);
  histogram.reset();
});
