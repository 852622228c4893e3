/**
 * Entry point: read the configuration, load the keys, open the log, start the server, and wire
 * the signals. No logic of its own. Operational messages go to stderr; stdout carries only the
 * interactions log, so it can be piped straight into a log shipper.
 */
import { ConfigError, loadConfig } from './config.js';
import { KeyFileError, KeyStore, loadKeyFile } from './keys.js';
import { createInteractionLog, warn } from './log.js';
import { createRegistry } from './providers/index.js';
import { createGatewayServer } from './server.js';

const SHUTDOWN_TIMEOUT_MS = 30_000;

function fatal(message: string): never {
  process.stderr.write(`llm-gateway: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message);
    throw err;
  }

  const providers = createRegistry({ anthropicDefaultMaxTokens: config.anthropicDefaultMaxTokens });
  let keys: KeyStore;
  try {
    keys = new KeyStore(await loadKeyFile(config.keysFile, providers));
  } catch (err) {
    if (err instanceof KeyFileError) fatal(`cannot start: ${err.message}`);
    throw err;
  }

  const log = await createInteractionLog(config);
  const gateway = createGatewayServer({ keys, log, maxBodyBytes: config.maxBodyBytes });
  const server = gateway.http;

  server.once('error', (err: NodeJS.ErrnoException) => {
    fatal(`cannot listen on ${config.host ?? 'all interfaces'}:${config.port} (${err.code ?? err.message})`);
  });
  server.listen(config.port, config.host, () => {
    const address = server.address();
    const where = typeof address === 'object' && address !== null ? `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address);
    warn(
      `listening on http://${where} with ${keys.size} virtual key${keys.size === 1 ? '' : 's'} ` +
        `(providers: ${keys.providerNames().join(', ')}); log file: ${config.logFile ?? 'off'}`,
    );
  });

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    warn(`${signal} received: finishing ${gateway.activeRequests()} in-flight request(s), then exiting`);
    server.close();
    server.closeIdleConnections();
    const timer = setTimeout(() => {
      warn('shutdown timeout reached: closing the remaining connections');
      server.closeAllConnections();
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    void gateway
      .whenIdle()
      .then(() => log.close())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => fatal(`failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));
