/**
 * Reading the shipped monitoring files (packaging/grafana/thoc-node.json, packaging/prometheus/alerts.yml)
 * and the agent's /metrics text, for the tests that hold them to each other: a metric renamed in the
 * agent must break a test, not a dashboard panel in production.
 *
 * The PromQL reading is deliberately small (no parser of our own to trust): it finds the metric names,
 * the label matchers of each selector and the labels of each `by (...)`, which is all the cross-check
 * needs. Whether an expression is valid PromQL is promtool's job (alerts.test.ts).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "./harness.js";

export const DASHBOARD = path.join(REPO_ROOT, "packaging", "grafana", "thoc-node.json");
export const ALERTS = path.join(REPO_ROOT, "packaging", "prometheus", "alerts.yml");
export const ALERT_TESTS = path.join(REPO_ROOT, "packaging", "prometheus", "alerts.test.yml");

export interface AlertRule { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }

export function alertRules(file = ALERTS): AlertRule[] {
  const doc = parse(readFileSync(file, "utf8")) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

export interface Panel { id: number; type: string; title: string; datasource?: { type?: string; uid?: string }; targets?: { expr: string; datasource?: { uid?: string } }[]; panels?: Panel[] }
export interface Dashboard { schemaVersion: number; uid: string; title: string; panels: Panel[]; templating: { list: { name: string; type: string; query?: unknown }[] } }

export function dashboard(file = DASHBOARD): Dashboard {
  return JSON.parse(readFileSync(file, "utf8")) as Dashboard;
}

/** Every panel, those inside collapsed rows included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** Every query of the dashboard with its panel's title. */
export function dashboardExprs(d: Dashboard): { panel: string; expr: string }[] {
  return allPanels(d).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** Grafana's variables replaced by what a query would see, so the text is plain PromQL. */
export function plainPromql(expr: string): string {
  return expr.replaceAll("$__rate_interval", "5m").replaceAll("$__interval", "1m").replace(/\$\{?instance\}?/g, ".*");
}

const FUNCTIONS_AND_KEYWORDS = new Set([
  "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
  "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
  "inf", "nan",
]);

export interface Matcher { label: string; op: string; value: string }
export interface Selector { metric: string; matchers: Matcher[] }
export interface Grouping { labels: string[]; metrics: string[] }

/** The text inside the parentheses that open at s[open] ("(" expected), balanced. */
function group(s: string, open: number): string {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === "(") depth++;
    else if (s[i] === ")" && --depth === 0) return s.slice(open + 1, i);
  }
  throw new Error(`unbalanced parentheses in ${s}`);
}

/** Metric selectors (name and label matchers) of a PromQL expression. */
export function selectors(expr: string): Selector[] {
  // Not plainPromql(): a matcher's value is reported as written ("$instance"); the [ranges] holding the
  // other variables are dropped below.
  const s = expr;
  const out: Selector[] = [];
  // Strings (label values) first: they may contain anything, identifiers included.
  const strings: string[] = [];
  const masked = s.replace(/"(?:[^"\\]|\\.)*"/g, (m) => `"${strings.push(JSON.parse(m) as string) - 1}"`);
  // A selector is an identifier not followed by "(" (a function), optionally with {matchers};
  // the label lists of by/without/on/ignoring/group_x (...) and the [ranges] are not selectors.
  const cleaned = masked.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ").replace(/\[[^\]]*\]/g, " ");
  const re = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?/g;
  for (const m of cleaned.matchAll(re)) {
    const [, name, braces, call] = m;
    const before = cleaned[m.index! - 1];
    if (call || FUNCTIONS_AND_KEYWORDS.has(name!) || (before !== undefined && /[0-9.]/.test(before))) continue;
    const matchers = [...(braces ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(\d+)"/g)]
      .map(([, label, op, i]) => ({ label: label!, op: op!, value: strings[Number(i)]! }));
    out.push({ metric: name!, matchers });
  }
  return out;
}

/** The labels of each `by (...)` aggregation with the metrics it aggregates. */
export function groupings(expr: string): Grouping[] {
  const s = expr;
  const out: Grouping[] = [];
  for (const m of s.matchAll(/\bby\s*\(([^)]*)\)\s*\(/g)) {
    const inner = group(s, m.index! + m[0].length - 1);
    out.push({ labels: m[1]!.split(",").map((l) => l.trim()).filter(Boolean), metrics: selectors(inner).map((x) => x.metric) });
  }
  return out;
}

/** What an agent's /metrics text says: every name it declares (with a histogram's series names) and its samples' labels. */
export interface Exposition {
  /** Names a query may use: each # TYPE'd metric, and name_bucket/_sum/_count for histograms (summaries: _sum/_count). */
  names: Set<string>;
  /** Label sets of every sample, by series name (x_bucket for a histogram's buckets). */
  samples: Map<string, Record<string, string>[]>;
}

export function readExposition(text: string): Exposition {
  const names = new Set<string>();
  const samples = new Map<string, Record<string, string>[]>();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t) {
      const [, name, type] = t;
      names.add(name!);
      if (type === "histogram") for (const sfx of ["_bucket", "_sum", "_count"]) names.add(name! + sfx);
      if (type === "summary") for (const sfx of ["_sum", "_count"]) names.add(name! + sfx);
      continue;
    }
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    const list = samples.get(m[1]!) ?? [];
    list.push(labels);
    samples.set(m[1]!, list);
  }
  return { names, samples };
}
