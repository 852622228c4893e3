/**
 * The "physical limit": the least work any Node gateway must do. Read the body, swap the key,
 * forward to the same path (the provider answers in the client's own API, as the gateway's
 * client gets it) on a keep-alive `http.request`, pipe the answer back. No validation, no
 * translation, no log, no metrics.
 *
 * With `pool` as third argument, the same proxy forwards through the gateway's own client
 * (src/upstream/http-client.ts) instead: the least work a gateway on that client must do.
 *
 * With PROXY_PROCESSES=2, two processes share the port (node:cluster), for the rows that compare
 * the gateway's workers with it.
 *
 * With PROXY_LOG_FILE set, it also appends each request body as it came, and a newline, to that
 * file and to stdout (asynchronous writes): the least a gateway that logs every body to both must
 * do, whatever its entries look like.
 *
 * It reports `ready <port>` on stderr (stdout may be a log).
 *
 *   node dist/bench/bench/proxy.js <port> <upstream port> [pool]
 */
import cluster from 'node:cluster';
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import { HttpClient } from '../src/upstream/http-client.js';

const processes = Number(process.env.PROXY_PROCESSES ?? 1);
const upstreamPort = Number(process.argv[3]);
const pool = process.argv[4] === 'pool';
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' });
const client = new HttpClient();
const logFile = process.env.PROXY_LOG_FILE;
const logs = logFile === undefined ? [] : [createWriteStream(logFile, { flags: 'a' }), createWriteStream('', { fd: 1 })];
const NEWLINE = Buffer.from('\n');

const server = http.createServer({ keepAliveTimeout: 120_000, noDelay: true }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    for (const log of logs) {
      log.write(body);
      log.write(NEWLINE);
    }
    if (pool) {
      client.call(
        { https: false, hostname: '127.0.0.1', port: upstreamPort, method: 'POST', path: req.url ?? '/', headers: { authorization: 'Bearer sk-real-key' }, body, contentType: 'application/json' },
        {
          onResponse: (up) => {
            res.writeHead(up.status, up.headers);
            up.body.pipe(res);
          },
          onError: () => {
            res.writeHead(502);
            res.end();
          },
        },
      );
      return;
    }
    const upstream = http.request(
      {
        agent,
        host: '127.0.0.1',
        port: upstreamPort,
        method: 'POST',
        path: req.url ?? '/',
        headers: { authorization: 'Bearer sk-real-key', 'content-type': 'application/json', 'content-length': body.length },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    upstream.end(body);
  });
});
if (processes > 1 && cluster.isPrimary) {
  // The primary picks the port, then its processes share it (round-robin, as the gateway's workers).
  const probe = http.createServer().listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
    const address = probe.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    probe.close(() => {
      let ready = 0;
      for (let i = 0; i < processes; i++) {
        cluster.fork({ PROXY_PORT: String(port) }).on('listening', () => {
          if (++ready === processes) process.stderr.write(`ready ${port}\n`);
        });
      }
    });
  });
} else {
  server.listen(Number(process.env.PROXY_PORT ?? process.argv[2] ?? 0), '127.0.0.1', () => {
    const address = server.address();
    if (cluster.isPrimary) process.stderr.write(`ready ${typeof address === 'object' && address !== null ? address.port : ''}\n`);
  });
}
