/**
 * Loaded with `--import` into a gateway run with workers on a port already in use: in the cluster
 * primary, Node's answer to every worker's listen request but the first's (the error) is held until
 * that worker has exited. That is the order a loaded machine produced once in CI: the first
 * worker's failure stopped the instance, the others exited, and only then did the primary answer
 * one of them, into a closed channel.
 */
import cluster from 'node:cluster';

function isListenAnswer(message: unknown): boolean {
  if (typeof message !== 'object' || message === null) return false;
  const fields = message as { cmd?: unknown; errno?: unknown };
  return fields.cmd === 'NODE_CLUSTER' && typeof fields.errno === 'number' && fields.errno !== 0;
}

if (cluster.isPrimary) {
  cluster.on('fork', (worker) => {
    if (worker.id === 1) return;
    const child = worker.process;
    const send = child.send.bind(child) as (...args: unknown[]) => boolean;
    child.send = ((message: unknown, ...rest: unknown[]): boolean => {
      if (!isListenAnswer(message)) return send(message, ...rest);
      child.once('exit', () => send(message, ...rest));
      return true;
    }) as typeof child.send;
  });
}
