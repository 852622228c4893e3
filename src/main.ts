/**
 * Entry point: read the configuration, validate the keys, open the log, then serve, either in
 * this process or, with GATEWAY_WORKERS > 1, in cluster workers coordinated by this one. No logic
 * of its own. Operational messages go to stderr; stdout carries only the interactions log.
 */
import { ConfigError, isLoopback, loadConfig, type Config } from './config.js';
import { isPrimary, runPrimary, runWorker } from './cluster/index.js';
import { createInstance, listenFailure } from './instance.js';
import { limitsShown } from './redis/url.js';
import { closeSinks, createSinks, endProcess, logFileShown, savedAtExit } from './observe/log-sinks.js';
import { serveWithoutStderr, warn } from './observe/warn.js';
import { endOnUncaught } from './observe/crash.js';
import { KeyFile, watchKeyFiles } from './policy/key-file.js';
import { ConfigFileError } from './config-file-error.js';
import { LimitState, localLimiter } from './policy/limits.js';
import { SpendStore } from './policy/spend-store.js';
import { seedWhenUp, shareLimits } from './policy/shared-limits.js';
import { Metrics } from './observe/metrics.js';
import { registry } from './providers/index.js';

function fatal(message: string): never {
  process.stderr.write(`llm-gateway: ${message}\n`);
  process.exit(1);
}

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message);
    throw err;
  }
}

async function main(): Promise<void> {
  serveWithoutStderr();
  const config = readConfig();
  if (!isPrimary()) return runWorker(config, registry);

  let opened: Awaited<ReturnType<typeof KeyFile.open>>;
  try {
    opened = await KeyFile.open(config.keysFile, registry, config.pricesFile);
  } catch (err) {
    if (err instanceof ConfigFileError) fatal(`cannot start: ${err.message}`);
    throw err;
  }
  const { file: keyFile, keys, prices } = opened;
  for (const misspelt of config.misspelt) warn(misspelt);
  if (config.metricsToken === null && !isLoopback(config.host)) {
    warn('GET /metrics answers 403 on this address until METRICS_TOKEN is set (without one it is served only on a loopback GATEWAY_HOST)');
  }
  const sinks = await createSinks(config);
  const spend = new SpendStore(config.stateFile);
  try {
    await spend.load();
  } catch (err) {
    if (err instanceof ConfigFileError) fatal(`cannot start: ${err.message}`);
    throw err;
  }
  const limits = new LimitState(spend);
  if (config.workers > 1) {
    if (config.redis !== null) seedWhenUp(config.redis.address, spend);
    endOnUncaught((deadlineMs) => closeSinks(sinks, deadlineMs), () => spend.save());
    return runPrimary({ config, keyFile, keyCount: keys.length, sinks, limits, spend });
  }

  const metrics = new Metrics();
  const local = localLimiter(limits);
  const shared = config.redis === null ? null : shareLimits({ ...config.redis, local, metrics, seedFrom: spend });
  const instance = createInstance({ config, keys, prices, keyFile, sinks, limiter: shared ?? local, metrics, shared });
  endOnUncaught(
    (deadlineMs) => instance.log.close(deadlineMs),
    () => spend.save(),
    () => {
      instance.server.drain();
      instance.server.http.close();
    },
  );
  let address: string;
  try {
    address = await instance.listen();
  } catch (err) {
    fatal(listenFailure(config, err));
  }
  const providers = [...new Set(keys.flatMap((key) => key.targets.map((target) => target.provider.name)))].sort().join(', ');
  warn(`listening on http://${address} with ${keys.length} virtual key${keys.length === 1 ? '' : 's'} (providers: ${providers}); log file: ${logFileShown(config.logFile, sinks)}; limits ${limitsShown(config.redis?.address ?? null)}`);

  process.on('SIGHUP', () => {
    instance.reopenLog();
    void instance.reloadKeys('SIGHUP', false);
  });
  if (config.keysWatch) {
    watchKeyFiles(config.pricesFile === null ? [config.keysFile] : [config.keysFile, config.pricesFile], () => void instance.reloadKeys('file changed', true));
  }
  const stop = (signal: string): void => {
    void instance
      .shutdown(signal)
      .then(async (flushed) => {
        const saved = await savedAtExit(spend.save());
        endProcess(0, flushed && saved, signal);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => fatal(`failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));
