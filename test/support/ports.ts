/**
 * Ports for tests that need an address before anything listens on it. Test files run side by side,
 * each starting servers on ports the kernel picks: a port only bound and released can be the next
 * one picked, and a target meant to refuse would be answered by another file's gateway or mock.
 */
import { once } from 'node:events';
import net from 'node:net';

/** A port to listen on soon (bound, then released: someone else may take it first, rarely). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A port that refuses every connection for as long as this process runs: the local end of a
 * connection the process keeps open. Nothing listens on it, and while a socket holds it the kernel
 * gives it to no server that asks for any port.
 */
export async function refusingPort(): Promise<number> {
  return (await localEnd()).localPort as number;
}

/** Holds a port a server of the test's own just let go of (a Redis it stopped), until `release`. */
export async function holdPort(port: number): Promise<() => void> {
  const holder = await localEnd(port);
  return () => void holder.destroy();
}

async function localEnd(localPort?: number): Promise<net.Socket> {
  const server = net.createServer((accepted) => accepted.unref());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const holder = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', ...(localPort === undefined ? {} : { localAddress: '127.0.0.1', localPort }) });
  await once(holder, 'connect');
  holder.unref();
  server.close();
  return holder;
}
