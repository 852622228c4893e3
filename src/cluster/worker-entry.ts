/**
 * What a cluster worker runs first, before the gateway's modules load: the primary coordinates
 * stops and reloads over IPC, and a signal sent to the whole process group (Ctrl-C, systemd's
 * stop) reaches the workers too. Taken by a worker as well, it would count twice (a second stop
 * ends the requests in flight at once); by default it would kill one still loading its modules
 * (reported as a death, and replaced, in the middle of the stop). Node's own start, before any
 * JavaScript runs (~0.1 s), stays exposed: there a SIGTERM ends the worker.
 */
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => {});

await import('../main.js');
