import assert from "node:assert/strict";
import type { ServerStats } from "../../mod.ts";

/** One metric family of a Prometheus text exposition. */
export interface Family {
  help: string;
  type: "counter" | "gauge" | "histogram";
  /** Its samples: the sample name with `{labels}` as rendered, and value. */
  samples: Sample[];
}

/** One sample line. */
export interface Sample {
  name: string;
  /** Label values, unescaped. */
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

/**
 * Parses the text exposition format (0.0.4) strictly: HELP then TYPE once
 * per family before its samples, one sample per series, escaped label
 * values, histograms with cumulative buckets ending at `le="+Inf"` equal to
 * `_count`. Fails the test on any departure.
 */
export function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "ends with a newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let help: [string, string] | null = null;
  let current: [string, Family] | null = null;
  for (const line of text.slice(0, -1).split("\n")) {
    const helpMatch = /^# HELP (\S+) (.*)$/.exec(line);
    const typeMatch = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (helpMatch) {
      assert.match(helpMatch[1], NAME);
      assert.ok(!families.has(helpMatch[1]), `one HELP: ${line}`);
      assert.doesNotMatch(helpMatch[2], /\\[^\\n]/, `HELP escapes: ${line}`);
      help = [helpMatch[1], unescape(helpMatch[2])];
      continue;
    }
    if (typeMatch) {
      assert.equal(help?.[0], typeMatch[1], `HELP right before TYPE: ${line}`);
      const family: Family = {
        help: help![1],
        type: typeMatch[2] as Family["type"],
        samples: [],
      };
      families.set(typeMatch[1], family);
      current = [typeMatch[1], family];
      help = null;
      continue;
    }
    assert.ok(!line.startsWith("#"), `an unknown comment: ${line}`);
    assert.ok(current !== null, `a sample before any TYPE: ${line}`);
    const sample = parseSample(line);
    const [family, { type }] = current;
    const allowed = type === "histogram"
      ? HISTOGRAM_SUFFIXES.map((suffix) => family + suffix)
      : [family];
    assert.ok(
      allowed.includes(sample.name),
      `a sample of ${family} under its TYPE: ${line}`,
    );
    const key = seriesKey(sample);
    assert.ok(!seen.has(key), `one sample per series: ${key}`);
    seen.add(key);
    current[1].samples.push(sample);
  }
  assert.equal(help, null, "a HELP without its TYPE");
  for (const [name, family] of families) {
    if (family.type === "histogram") checkHistogram(name, family);
  }
  return families;
}

/**
 * The value of one series.
 *
 * @param families What {@linkcode parseExposition} returned.
 * @param name The sample name (`duplex_x_bucket`).
 * @param labels Its labels, all of them.
 */
export function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const key = seriesKey({ name, labels, value: 0 });
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (seriesKey(sample) === key) return sample.value;
    }
  }
  return undefined;
}

function parseSample(line: string): Sample {
  const match = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
  assert.ok(match, `a sample line: ${JSON.stringify(line)}`);
  const [, name, labelText = "", valueText] = match;
  assert.match(name, NAME);
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < labelText.length) {
    const start = LABEL.lastIndex;
    const label = LABEL.exec(labelText);
    assert.ok(label, `a label at ${start} of ${JSON.stringify(line)}`);
    assert.ok(!(label[1] in labels), `label ${label[1]} once: ${line}`);
    labels[label[1]] = unescape(label[2]);
  }
  const value = valueText === "+Inf"
    ? Infinity
    : valueText === "-Inf"
    ? -Infinity
    : Number(valueText);
  assert.ok(
    valueText === "NaN" || !Number.isNaN(value),
    `a number: ${JSON.stringify(line)}`,
  );
  return { name, labels, value };
}

function checkHistogram(name: string, family: Family): void {
  const buckets = family.samples.filter((s) => s.name === `${name}_bucket`);
  const count = family.samples.find((s) => s.name === `${name}_count`);
  const sum = family.samples.find((s) => s.name === `${name}_sum`);
  assert.ok(count && sum, `${name} has _sum and _count`);
  assert.ok(buckets.length > 0, `${name} has buckets`);
  let previous = { le: -Infinity, value: 0 };
  for (const bucket of buckets) {
    assert.deepEqual(Object.keys(bucket.labels), ["le"], `${name}: le only`);
    const le = bucket.labels.le === "+Inf"
      ? Infinity
      : Number(bucket.labels.le);
    assert.ok(
      !Number.isNaN(le),
      `${name}: le is a number: ${bucket.labels.le}`,
    );
    assert.ok(le > previous.le, `${name}: le ascending`);
    assert.ok(bucket.value >= previous.value, `${name}: cumulative buckets`);
    previous = { le, value: bucket.value };
  }
  assert.equal(previous.le, Infinity, `${name}: the last bucket is le="+Inf"`);
  assert.equal(previous.value, count.value, `${name}: +Inf equals _count`);
}

function seriesKey(sample: Sample): string {
  const labels = Object.entries(sample.labels).sort(([a], [b]) =>
    a < b ? -1 : 1
  );
  return JSON.stringify([sample.name, labels]);
}

function unescape(text: string): string {
  return text.replace(/\\([\\"n])/g, (_, c) => c === "n" ? "\n" : c);
}

/** A server's stats before anything happened. */
export function zeroStats(): ServerStats {
  return {
    openConnections: 0,
    transportConnections: 0,
    totalConnections: 0,
    messagesReceived: 0,
    messagesSent: 0,
    bytesReceived: 0,
    bytesSent: 0,
    backpressureDrops: 0,
    bufferedBytes: 0,
    budgetCloses: 0,
    closeCodes: {},
    handshakeRejections: {},
    httpRequests: {},
    httpHandlerErrors: 0,
    timeouts: {},
    connectionErrors: 0,
    pingRtt: {
      count: 0,
      mean: 0,
      max: 0,
      sum: 0,
      buckets: [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
        .map((le) => ({ le, count: 0 })),
    },
  };
}
