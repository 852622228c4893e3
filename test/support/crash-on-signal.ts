/**
 * Imported into a gateway (`NODE_OPTIONS=--import …`): its cluster workers throw an exception
 * nobody catches on SIGUSR2, a bug that escaped, on cue.
 */
import cluster from 'node:cluster';

if (cluster.isWorker) {
  process.on('SIGUSR2', () => {
    setImmediate(() => {
      throw new Error('a bug on cue');
    });
  });
}
