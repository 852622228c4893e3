/**
 * Imported into a gateway (`NODE_OPTIONS=--import …`): the process sent SIGUSR2 (a single
 * process, a cluster primary or one of its workers) throws an exception nobody catches, outside
 * any handler: what a bug in the gateway would do, on cue.
 */
process.on('SIGUSR2', () => {
  setImmediate(() => {
    throw new Error('a bug in the gateway');
  });
});
