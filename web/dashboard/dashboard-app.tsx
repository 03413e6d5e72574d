import { useEffect, useState } from 'react';
import { DASHBOARD_HISTORY, type DashboardGrid, type DashboardSample, type DashboardSnapshot } from '../../shared/protocol/messages.js';
import { connectSwarm } from '../net/socket.js';
import { Plot } from './plot.js';
import { ServiceFigures } from './service-figures.js';

interface View {
  readonly info: Pick<DashboardSnapshot, 'modelId' | 'stages' | 'redundancy' | 'intervalMs'>;
  readonly history: readonly DashboardSample[];
  /** Up to 64 volunteers per stage, and every stage's counts. */
  readonly grid: DashboardGrid;
  readonly sessions: number;
}

function repClass(r: number): string {
  return r >= 0.8 ? 'good' : r >= 0.5 ? 'fair' : 'poor';
}

/** The live dashboard: the stages × replicas grid and plots over time, pushed over Socket.IO every second. */
export function DashboardApp() {
  const [view, setView] = useState<View | null>(null);
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    const s = connectSwarm('requester');
    // After a reconnect (a server restart) the subscription is made again.
    s.on('connect', () => {
      setConnected(true);
      s.emit('dashboard:subscribe');
    });
    s.on('disconnect', () => setConnected(false));
    s.on('dashboard:snapshot', (m) =>
      setView({
        info: { modelId: m.modelId, stages: m.stages, redundancy: m.redundancy, intervalMs: m.intervalMs },
        history: m.history,
        grid: m.grid,
        sessions: m.sessions,
      }),
    );
    s.on('dashboard:update', (m) =>
      setView((v) =>
        v === null
          ? v
          : // The grid comes only when it changed.
            { ...v, history: [...v.history, m.sample].slice(-DASHBOARD_HISTORY), grid: m.grid ?? v.grid, sessions: m.sessions },
      ),
    );
    return () => {
      s.disconnect();
    };
  }, []);

  if (view === null) {
    return (
      <main className="wide">
        <h1>webswarm dashboard</h1>
        <p>{connected ? 'Waiting for the first update…' : 'Connecting…'}</p>
      </main>
    );
  }
  const { info, history, grid } = view;
  const stages = Array.from({ length: info.stages }, (_, s) => grid.volunteers.filter((v) => v.stage === s));
  const online = grid.stages.reduce((n, c) => n + c.volunteers, 0);
  const span = Math.round((DASHBOARD_HISTORY * info.intervalMs) / 1000);
  const last = history.at(-1);
  return (
    <main className="wide">
      <h1>webswarm dashboard</h1>
      <p data-testid="summary" className={connected ? '' : 'stale'}>
        {info.modelId}: {info.stages} stages × {info.redundancy} replicas wanted · <strong>{online}</strong> volunteer
        {online === 1 ? '' : 's'} online · {view.sessions} generation{view.sessions === 1 ? '' : 's'} running
        {connected ? '' : ' · disconnected, retrying…'}
      </p>
      <section aria-label="stages and replicas">
        <table className="grid-table" data-testid="grid">
          <tbody>
            {stages.map((vs, s) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: a stage is its index
              <tr key={s} data-stage={s}>
                <th scope="row">
                  stage {s}
                  <br />
                  <span className="small">
                    {grid.stages[s]?.ready ?? 0}/{info.redundancy} ready
                  </span>
                </th>
                <td>
                  <div className="replicas">
                    {vs.length === 0 && <span className="small">no volunteer</span>}
                    {vs.map((v) => (
                      <div key={v.id} className={`replica ${v.state}`} data-volunteer={v.id} title={v.adapter ?? 'WebAssembly (CPU)'}>
                        <code>{v.id.slice(0, 8)}</code>
                        <span>
                          {v.backend} · {v.state}
                        </span>
                        <span className={`rep ${repClass(v.reputation)}`}>
                          rep {v.reputation.toFixed(2)} ({v.agreed}✓ {v.disagreed}✗)
                        </span>
                      </div>
                    ))}
                    {(grid.stages[s]?.volunteers ?? 0) > vs.length && (
                      <span className="small" data-testid="more">
                        +{(grid.stages[s]?.volunteers ?? 0) - vs.length} more
                      </span>
                    )}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <ServiceFigures />
      <section className="plots" aria-label="over time">
        <Plot
          title="Tokens per second"
          span={span}
          series={[
            { name: 'tokens/s', color: '#3b6fd8', values: history.map((h) => h.tokensPerS) },
            { name: 'computed in part by the server', color: '#d9a300', values: history.map((h) => h.serverTokensPerS) },
          ]}
        />
        <Plot
          title="Volunteers online"
          span={span}
          series={[{ name: 'volunteers', color: '#7a4fd0', values: history.map((h) => h.volunteers) }]}
        />
        <Plot
          title="Votes per second"
          span={span}
          series={[
            { name: 'agreed', color: '#3d9a50', values: history.map((h) => h.agreed) },
            { name: 'disagreed', color: '#c43d3d', values: history.map((h) => h.disagreed) },
            { name: 'missing', color: '#d9a300', values: history.map((h) => h.missing) },
          ]}
        />
      </section>
      {last !== undefined && (
        <p className="small">Updated {new Date(last.t).toLocaleTimeString()}, one sample a second, last five minutes.</p>
      )}
    </main>
  );
}
