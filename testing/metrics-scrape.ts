// A server's Prometheus counters as its /metrics page gives them, for tests and
// benchmarks that check what the server counted (events dropped, sockets cut off).

/** The values of the named unlabelled metrics on `${url}/metrics` (NaN where one is absent). */
export async function scrapeMetrics<K extends string>(url: string, names: readonly K[]): Promise<Record<K, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const lines = text.split('\n');
  const out = {} as Record<K, number>;
  for (const name of names) {
    const line = lines.find((l) => l.startsWith(`${name} `));
    out[name] = line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
  }
  return out;
}

/** Socket.IO events the server dropped over a socket's budget, and sockets it cut off for it. */
export async function budgetCounts(url: string): Promise<{ dropped: number; limited: number }> {
  const m = await scrapeMetrics(url, ['webswarm_socket_events_dropped_total', 'webswarm_sockets_rate_limited_total']);
  return { dropped: m.webswarm_socket_events_dropped_total, limited: m.webswarm_sockets_rate_limited_total };
}
