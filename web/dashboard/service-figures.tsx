import { useEffect, useState } from 'react';
import { parseServiceStatus, type ServiceStatus } from '../../shared/protocol/http.js';
import { fallbackText, figureRows, readyText, windowName } from './figures.js';

/** How often the figures are fetched again. */
const REFRESH_MS = 5_000;

/**
 * What the service achieved over the last 5 minutes and hour (GET /api/status,
 * the same figures a public status page reads): latency percentiles, requests
 * answered, tokens verified by volunteers and computed by the fallback.
 */
export function ServiceFigures() {
  const [status, setStatus] = useState<ServiceStatus | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    const load = async () => {
      try {
        const res = await fetch('/api/status');
        const parsed = parseServiceStatus(await res.json());
        if (stopped) return;
        if (parsed.ok) {
          setStatus(parsed.value);
          setProblem(null);
        } else setProblem(parsed.reason);
      } catch (e) {
        if (!stopped) setProblem((e as Error).message);
      }
    };
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  if (status === null) return <p className="small">{problem === null ? 'Loading the service figures…' : `Service figures: ${problem}`}</p>;
  return (
    <section aria-label="service figures" data-testid="service-figures">
      <table>
        <caption>Service figures (GET /api/status)</caption>
        <thead>
          <tr>
            <th />
            {status.windows.map((w) => (
              <th key={w.windowS} scope="col">
                last {windowName(w.windowS)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {figureRows(status.windows).map((r) => (
            <tr key={r.label}>
              <th scope="row">{r.label}</th>
              {r.cells.map((c, i) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: a cell is its window
                <td key={i}>{c}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <p className="small" data-testid="fallback">
        {fallbackText(status)} · {readyText(status)}
      </p>
    </section>
  );
}
