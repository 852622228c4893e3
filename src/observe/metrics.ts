/**
 * Metrics in the Prometheus text format, hand-written. Each process keeps its own counters and
 * histograms; a snapshot is plain data, so the cluster primary can merge the workers' snapshots
 * and answer /metrics for the whole instance.
 */

export type Labels = Readonly<Record<string, string>>;

/** The kinds of `llm_gateway_redis_errors_total`, each explained in its help text. */
export const REDIS_ERROR_KINDS = ['unavailable', 'timeout', 'error', 'backlog_full', 'settlement_lost'] as const;
export type RedisErrorKind = (typeof REDIS_ERROR_KINDS)[number];

export interface HistogramData {
  /** Non-cumulative counts per bucket, the last one being +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

export interface MetricsSnapshot {
  /** metric name → serialized label set → value */
  counters: Record<string, Record<string, number>>;
  histograms: Record<string, Record<string, HistogramData>>;
  gauges: Record<string, Record<string, number>>;
}

interface Definition {
  readonly type: 'counter' | 'histogram' | 'gauge';
  readonly help: string;
  readonly buckets?: readonly number[];
  /** How a gauge of several workers is one instance's: their sum (requests in flight), or the least (all of them up). */
  readonly combine?: 'min';
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const OVERHEAD_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/** Every metric the gateway exposes; the README lists the same names. */
const METRICS: Readonly<Record<string, Definition>> = {
  llm_gateway_requests_total: { type: 'counter', help: 'Requests of every client API by provider, key name, model and response status.' },
  llm_gateway_request_duration_seconds: { type: 'histogram', help: 'Duration of requests of every client API (chat, messages, responses and their other routes), from arrival to the end of the response.', buckets: LATENCY_BUCKETS },
  llm_gateway_upstream_ttfb_seconds: { type: 'histogram', help: "Time from sending a request to the provider to its response headers.", buckets: LATENCY_BUCKETS },
  llm_gateway_overhead_seconds: { type: 'histogram', help: 'Time spent in the gateway itself, excluding the wait for the provider.', buckets: OVERHEAD_BUCKETS },
  llm_gateway_prompt_tokens_total: { type: 'counter', help: 'Prompt tokens reported by providers (as in the log\'s usage).' },
  llm_gateway_completion_tokens_total: { type: 'counter', help: 'Completion tokens reported by providers (as in the log\'s usage: for a stream cut short, at least the events it relayed).' },
  llm_gateway_requests_in_flight: { type: 'gauge', help: 'Requests being served right now.' },
  llm_gateway_log_write_failures_total: { type: 'counter', help: 'Interaction log entries lost from a destination (a write that failed, or dropped while it was stuck): an entry lost from two destinations counts twice.' },
  llm_gateway_key_reloads_total: { type: 'counter', help: 'Keys file reloads, by result (ok: new keys in use; error: file invalid, previous keys kept).' },
  llm_gateway_virtual_keys: { type: 'gauge', help: 'Virtual keys currently loaded.' },
  llm_gateway_target_requests_total: { type: 'counter', help: 'Requests to each target of keys with several, by key name, target index, provider and outcome (answered, failed: moved on, circuit_open: passed over while its circuit breaker is open, skipped: passed over, its real keys all cooling down or the request unable to go to it).' },
  llm_gateway_fallbacks_total: { type: 'counter', help: 'Moves of a request to the next target of its key, by key name.' },
  llm_gateway_cost_usd_total: { type: 'counter', help: 'Cost in USD of the tokens providers reported, by provider, key name and the model that served (from the price table).' },
  llm_gateway_redis_duration_seconds: { type: 'histogram', help: 'Time Redis took to answer a shared-limits script (REDIS_URL), by operation (admit, settle, report, renew).', buckets: OVERHEAD_BUCKETS },
  llm_gateway_redis_errors_total: { type: 'counter', help: 'Redis calls that failed, by kind (unavailable: not connected; timeout: no answer within REDIS_TIMEOUT_MS; error: refused; backlog_full: a settlement dropped while Redis was down; settlement_lost: a settlement whose connection dropped before its answer, not sent again since it may have counted already, or one Redis refused for anything but its state).' },
  llm_gateway_redis_fallbacks_total: { type: 'counter', help: 'Limit checks decided without Redis, by policy (open: by this instance alone; closed: refused with 503).' },
  llm_gateway_redis_up: { type: 'gauge', help: 'Whether limits are shared through Redis right now (1: connected, and its last answer came in time, in every worker; 0: not, in one at least); absent without REDIS_URL.', combine: 'min' },
  llm_gateway_unpriced_requests_total: { type: 'counter', help: 'Requests that used tokens (reported, or estimated for an answer cut short) of a model without a price (their cost is unknown), by provider and model.' },
};

/** Beyond this many label sets per metric, new ones are folded into model="(other)": clients choose model names. */
const MAX_SERIES = 5000;

/** A surrogate without its other half: written as UTF-8, each is U+FFFD, and two such names would be one series written twice. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Control characters (a line break is escaped apart): valid in a label value, but drawn by the terminal `curl /metrics` writes to (ESC sequences, a CR). */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;

function escape(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`)).replace(LONE_SURROGATE, '\ufffd').replace(CONTROL, '\ufffd');
}

export function labelKey(labels: Labels): string {
  let key = '';
  for (const name in labels) key += `${key === '' ? '' : ','}${name}="${escape(labels[name] as string)}"`;
  return key;
}

export interface RequestObservation {
  provider: string;
  /** The key's name or digest label (never the key itself). */
  keyName: string;
  model: string;
  /** A provider answered this request with success: its model name is one a provider knows. */
  modelServed: boolean;
  status: number;
  durationSeconds: number;
  upstreamTtfbSeconds: number | null;
  overheadSeconds: number;
  promptTokens: number;
  completionTokens: number;
  /** A key with several targets: what each target tried did (empty otherwise). */
  targets: readonly TargetOutcome[];
  /** Moves to a next target. */
  fallbacks: number;
  /** The model the provider was asked for (what is priced), and the request's cost in USD (null: tokens of a model without a price). */
  upstreamModel: string;
  costUsd: number | null;
}

export interface TargetOutcome {
  /** Its index in the key's targets. */
  readonly target: number;
  readonly provider: string;
  /**
   * answered: its answer went to the client (whatever its status); failed: the request moved on;
   * circuit_open: passed over, its circuit breaker open; skipped: passed over, its real keys all
   * cooling down (or the request could not go to it).
   */
  readonly outcome: 'answered' | 'failed' | 'circuit_open' | 'skipped';
}

interface CounterSeries {
  /** The serialized, escaped label set, built once when the series appears. */
  readonly labels: string;
  value: number;
}

interface HistogramSeries {
  readonly labels: string;
  readonly data: HistogramData;
}

const SEP = '\u0001';

/** Labels back from the raw key they were joined into (only when a series is new). */
function splitModelLabels(raw: string): Labels {
  const [provider = '', keyName = '', model = ''] = raw.split(SEP);
  return { provider, key_name: keyName, model };
}

function splitRequestLabels(raw: string): Labels {
  const [provider = '', keyName = '', model = '', status = ''] = raw.split(SEP);
  return { provider, key_name: keyName, model, status };
}

function splitUnpricedLabels(raw: string): Labels {
  const [provider = '', model = ''] = raw.split(SEP);
  return { provider, model };
}

function splitTargetLabels(raw: string): Labels {
  const [keyName = '', target = '', provider = '', outcome = ''] = raw.split(SEP);
  return { key_name: keyName, target, provider, outcome };
}

export class Metrics {
  // Series are found by a plain concatenation of raw label values; the escaped Prometheus label
  // string is built only when a series is first seen (per-request label building was measurable).
  private readonly counters: Record<string, Map<string, CounterSeries>> = {};
  private readonly histograms: Record<string, Map<string, HistogramSeries>> = {};
  /** Model names a provider has served, the only ones labels name (modelLabel). */
  private readonly servedModels = new Set<string>();

  /** `labels` is only called for a series not seen before: the common case allocates nothing. */
  private add(name: string, raw: string, value: number, labels: (raw: string) => Labels): void {
    const series = (this.counters[name] ??= new Map());
    let entry = series.get(raw);
    if (entry === undefined) {
      let set = labels(raw);
      if (series.size >= MAX_SERIES && 'model' in set) {
        // Folded series are found by their (model-free) label string, so all of them share one.
        set = { ...set, model: '(other)' };
        raw = `\u0002${labelKey(set)}`;
        entry = series.get(raw);
      }
      if (entry === undefined) {
        entry = { labels: labelKey(set), value: 0 };
        series.set(raw, entry);
      }
    }
    entry.value += value;
  }

  /** `label`: the histogram's one label's value; `labelName` its name. */
  private observe(name: string, label: string, value: number, labelName = 'provider'): void {
    const bounds = METRICS[name]?.buckets ?? [];
    const series = (this.histograms[name] ??= new Map());
    let entry = series.get(label);
    if (entry === undefined) {
      entry = { labels: labelKey({ [labelName]: label }), data: { buckets: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 } };
      series.set(label, entry);
    }
    const data = entry.data;
    let bucket = 0;
    while (bucket < bounds.length && value > (bounds[bucket] as number)) bucket++;
    data.buckets[bucket] = (data.buckets[bucket] as number) + 1;
    data.sum += value;
    data.count++;
  }

  /**
   * The model a label may name: a client chooses it, so only one a provider has served (answered
   * with success) here. Any other (another key's allowlist refused it, a provider did not know it,
   * a count estimated here) is counted with an empty model: it would let a client fill the
   * metric's series with names of its making, at no cost.
   */
  private modelLabel(o: RequestObservation): string {
    if (o.model === '') return '';
    if (o.modelServed) {
      if (this.servedModels.size < MAX_SERIES) this.servedModels.add(o.model);
      return o.model;
    }
    return this.servedModels.has(o.model) ? o.model : '';
  }

  request(o: RequestObservation): void {
    const provider = o.provider;
    const label = this.modelLabel(o);
    // Key names hold no control characters (validated); a client-chosen model name might.
    const model = label.includes(SEP) ? label.replaceAll(SEP, ' ') : label;
    const byModel = `${provider}${SEP}${o.keyName}${SEP}${model}`;
    this.add('llm_gateway_requests_total', `${byModel}${SEP}${o.status}`, 1, splitRequestLabels);
    this.observe('llm_gateway_request_duration_seconds', provider, o.durationSeconds);
    this.observe('llm_gateway_overhead_seconds', provider, o.overheadSeconds);
    if (o.upstreamTtfbSeconds !== null) this.observe('llm_gateway_upstream_ttfb_seconds', provider, o.upstreamTtfbSeconds);
    for (const t of o.targets) {
      this.add('llm_gateway_target_requests_total', `${o.keyName}${SEP}${t.target}${SEP}${t.provider}${SEP}${t.outcome}`, 1, splitTargetLabels);
    }
    if (o.fallbacks > 0) this.add('llm_gateway_fallbacks_total', o.keyName, o.fallbacks, (raw) => ({ key_name: raw }));
    if (o.promptTokens > 0 || o.completionTokens > 0) {
      this.add('llm_gateway_prompt_tokens_total', byModel, o.promptTokens, splitModelLabels);
      this.add('llm_gateway_completion_tokens_total', byModel, o.completionTokens, splitModelLabels);
    }
    if (o.costUsd !== 0) {
      const served = o.upstreamModel.includes(SEP) ? o.upstreamModel.replaceAll(SEP, ' ') : o.upstreamModel;
      if (o.costUsd === null) this.add('llm_gateway_unpriced_requests_total', `${provider}${SEP}${served}`, 1, splitUnpricedLabels);
      else this.add('llm_gateway_cost_usd_total', `${provider}${SEP}${o.keyName}${SEP}${served}`, o.costUsd, splitModelLabels);
    }
  }

  redisCall(operation: string, seconds: number): void {
    this.observe('llm_gateway_redis_duration_seconds', operation, seconds, 'operation');
  }

  redisError(kind: RedisErrorKind): void {
    this.add('llm_gateway_redis_errors_total', kind, 1, (raw) => ({ kind: raw }));
  }

  redisFallback(policy: string): void {
    this.add('llm_gateway_redis_fallbacks_total', policy, 1, (raw) => ({ policy: raw }));
  }

  keyReload(result: 'ok' | 'error'): void {
    this.add('llm_gateway_key_reloads_total', result, 1, (raw) => ({ result: raw }));
  }

  /** Plain data; `extra` adds values read at scrape time (gauges, counters kept elsewhere). */
  snapshot(extra: { gauges?: Record<string, number>; counters?: Record<string, number> } = {}): MetricsSnapshot {
    const snapshot: MetricsSnapshot = { counters: {}, histograms: {}, gauges: {} };
    for (const [name, series] of Object.entries(this.counters)) {
      const values: Record<string, number> = {};
      // Summed: series whose labels read the same (a name folded into "(other)" beside a model
      // named so, names differing only in lone surrogates) are one series to Prometheus.
      for (const entry of series.values()) values[entry.labels] = (values[entry.labels] ?? 0) + entry.value;
      snapshot.counters[name] = values;
    }
    for (const [name, series] of Object.entries(this.histograms)) {
      const values: Record<string, HistogramData> = {};
      for (const entry of series.values()) values[entry.labels] = { ...entry.data, buckets: [...entry.data.buckets] };
      snapshot.histograms[name] = values;
    }
    for (const [name, value] of Object.entries(extra.gauges ?? {})) snapshot.gauges[name] = { '': value };
    for (const [name, value] of Object.entries(extra.counters ?? {})) snapshot.counters[name] = { ...snapshot.counters[name], '': value };
    return snapshot;
  }
}

/** Each label of a label string (labelKey's), its value whole: a `,model="` inside another label's value is never taken for the label. */
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g;

/** A label string with its model label's value "(other)". */
function modelFolded(key: string): string {
  return key.replace(LABEL, (label: string, name: string) => (name === 'model' ? 'model="(other)"' : label));
}

/**
 * Sums snapshots (counters, histogram buckets, gauges) into one: the whole instance. Each
 * worker caps its own series, so the sum of several (and of every worker that ever died) is
 * capped again: past MAX_SERIES, new model names count as model="(other)". `admitted` holds each
 * counter's series let in so far: kept from one sum to the next, a series once shown stays
 * (whichever worker's counters come first), rather than folding into "(other)" on a later scrape.
 */
export function mergeSnapshots(snapshots: readonly MetricsSnapshot[], admitted = new Map<string, Set<string>>()): MetricsSnapshot {
  const merged: MetricsSnapshot = { counters: {}, histograms: {}, gauges: {} };
  for (const snapshot of snapshots) {
    for (const [name, series] of Object.entries(snapshot.counters)) {
      const target = (merged.counters[name] ??= {});
      let known = admitted.get(name);
      if (known === undefined) admitted.set(name, (known = new Set()));
      for (const [key, value] of Object.entries(series)) {
        let into = key;
        if (!known.has(key)) {
          if (known.size < MAX_SERIES) known.add(key);
          else into = modelFolded(key);
        }
        target[into] = (target[into] ?? 0) + value;
      }
    }
    for (const [name, series] of Object.entries(snapshot.gauges)) {
      const target = (merged.gauges[name] ??= {});
      const least = METRICS[name]?.combine === 'min';
      for (const [key, value] of Object.entries(series)) target[key] = least ? Math.min(target[key] ?? value, value) : (target[key] ?? 0) + value;
    }
    for (const [name, series] of Object.entries(snapshot.histograms)) {
      const target = (merged.histograms[name] ??= {});
      for (const [key, data] of Object.entries(series)) {
        const into = target[key];
        if (into === undefined) target[key] = { ...data, buckets: [...data.buckets] };
        else {
          data.buckets.forEach((count, i) => (into.buckets[i] = (into.buckets[i] ?? 0) + count));
          into.sum += data.sum;
          into.count += data.count;
        }
      }
    }
  }
  return merged;
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf'; // Prometheus spells them so
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(12)));
}

function series(name: string, key: string, value: number, extra = ''): string {
  const labels = key === '' ? extra : extra === '' ? key : `${key},${extra}`;
  return `${name}${labels === '' ? '' : `{${labels}}`} ${formatNumber(value)}\n`;
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function renderPrometheus(snapshot: MetricsSnapshot): string {
  let out = '';
  for (const [name, definition] of Object.entries(METRICS)) {
    out += `# HELP ${name} ${definition.help}\n# TYPE ${name} ${definition.type}\n`;
    if (definition.type === 'histogram') {
      const bounds = definition.buckets ?? [];
      for (const [key, data] of Object.entries(snapshot.histograms[name] ?? {})) {
        let cumulative = 0;
        bounds.forEach((bound, i) => {
          cumulative += data.buckets[i] ?? 0;
          out += series(`${name}_bucket`, key, cumulative, `le="${formatNumber(bound)}"`);
        });
        out += series(`${name}_bucket`, key, data.count, 'le="+Inf"');
        out += series(`${name}_sum`, key, data.sum);
        out += series(`${name}_count`, key, data.count);
      }
    } else {
      const values = (definition.type === 'gauge' ? snapshot.gauges : snapshot.counters)[name] ?? {};
      for (const [key, value] of Object.entries(values)) out += series(name, key, value);
    }
  }
  return out;
}
