/**
 * Several workers on one port with node:cluster: a primary that serves no request and
 * coordinates (primary.ts), and workers that each run one instance (worker.ts).
 */
import cluster from 'node:cluster';

export { runPrimary, type PrimaryOptions } from './primary.js';
export { runWorker } from './worker.js';

export const isPrimary = (): boolean => cluster.isPrimary;
