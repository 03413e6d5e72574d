import { useEffect, useRef, useState } from 'react';
import type { TokenEvent } from '../../shared/protocol/messages.js';
import { connectSwarm, type SwarmSocket } from '../net/socket.js';

type Run =
  | { readonly kind: 'idle' }
  | { readonly kind: 'running'; readonly requestId: string }
  | { readonly kind: 'done'; readonly finishReason: string }
  | { readonly kind: 'failed'; readonly code: string; readonly message: string };

function verified(t: TokenEvent): boolean {
  return t.votes.every((v) => v.agreed * 2 > v.replicas);
}

export function ChatApp() {
  const socket = useRef<SwarmSocket | null>(null);
  const [swarm, setSwarm] = useState<{ volunteers: number; replicasPerStage: readonly number[] } | null>(null);
  const [keyRequired, setKeyRequired] = useState(false);
  const [apiKey, setApiKey] = useState(() => sessionStorage.getItem('webswarm.apiKey') ?? '');
  const [prompt, setPrompt] = useState('It is a truth universally acknowledged, that');
  const [maxTokens, setMaxTokens] = useState(32);
  const [temperature, setTemperature] = useState(0);
  const [seed, setSeed] = useState(0);
  const [tokens, setTokens] = useState<TokenEvent[]>([]);
  const [run, setRun] = useState<Run>({ kind: 'idle' });
  const current = useRef<string | null>(null);

  useEffect(() => {
    const s = connectSwarm('requester');
    socket.current = s;
    s.on('swarm:status', setSwarm);
    s.on('connect', () => s.emit('status:subscribe')); // again after each reconnect
    s.on('chat:token', (t) => {
      if (t.requestId === current.current) setTokens((xs) => [...xs, t]);
    });
    s.on('chat:done', (d) => {
      if (d.requestId === current.current) setRun({ kind: 'done', finishReason: d.finishReason });
    });
    s.on('chat:error', (e) => {
      if (e.requestId === current.current) setRun({ kind: 'failed', code: e.code, message: e.message });
    });
    s.on('server:error', (e) => setRun({ kind: 'failed', code: e.code, message: e.message }));
    fetch('/api/swarm')
      .then((r) => r.json() as Promise<{ volunteers: number; replicasPerStage: number[]; apiKeyRequired: boolean }>)
      .then((j) => {
        setSwarm(j);
        setKeyRequired(j.apiKeyRequired);
      })
      .catch(() => {});
    return () => {
      s.disconnect();
    };
  }, []);

  const send = () => {
    const requestId = crypto.randomUUID();
    current.current = requestId;
    setTokens([]);
    setRun({ kind: 'running', requestId });
    sessionStorage.setItem('webswarm.apiKey', apiKey);
    socket.current?.emit('chat:generate', {
      requestId,
      prompt,
      maxTokens,
      temperature,
      topP: 1,
      seed,
      apiKey: apiKey === '' ? null : apiKey,
    });
  };

  const last = tokens.at(-1);
  return (
    <main>
      <h1>webswarm chat</h1>
      <p data-testid="swarm">
        {swarm === null
          ? 'Connecting…'
          : `${swarm.volunteers} volunteers online; replicas per stage: ${swarm.replicasPerStage.join(' / ')}`}
      </p>
      <label>
        Prompt
        <textarea data-testid="prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} />
      </label>
      <div className="row">
        <label>
          Max tokens <input type="number" min={1} max={512} value={maxTokens} onChange={(e) => setMaxTokens(Number(e.target.value))} />
        </label>
        <label>
          Temperature{' '}
          <input type="number" min={0} max={2} step={0.1} value={temperature} onChange={(e) => setTemperature(Number(e.target.value))} />
        </label>
        <label>
          Seed <input type="number" min={0} value={seed} onChange={(e) => setSeed(Number(e.target.value))} />
        </label>
        {keyRequired && (
          <label>
            API key <input type="password" autoComplete="off" value={apiKey} onChange={(e) => setApiKey(e.target.value)} />
          </label>
        )}
      </div>
      <button type="button" data-testid="send" disabled={run.kind === 'running'} onClick={send}>
        Generate
      </button>
      <p className="output" data-testid="output">
        <span className="prompt">{prompt}</span>
        {tokens.map((t) => (
          <span
            key={t.index}
            className={verified(t) ? 'token verified' : 'token'}
            data-token={t.token}
            title={t.votes.map((v) => `stage ${v.stage}: ${v.agreed}/${v.replicas} agreed`).join('\n')}
          >
            {t.text}
          </span>
        ))}
      </p>
      <p data-testid="run-state">
        {run.kind === 'running' && `generating… ${tokens.length} tokens`}
        {run.kind === 'done' &&
          `done (${run.finishReason}): ${tokens.length} tokens, ${tokens.filter(verified).length} verified by a majority at every stage`}
        {run.kind === 'failed' && `failed: ${run.code}: ${run.message}`}
      </p>
      {last !== undefined && (
        <table>
          <caption>Route: who computed each stage, and the last token's vote</caption>
          <tbody>
            {last.route.map((ids, stage) => (
              <tr key={ids.join()}>
                <th>stage {stage}</th>
                <td>{ids.map((id) => id.slice(0, 8)).join(', ')}</td>
                <td>
                  {last.votes[stage]?.agreed}/{last.votes[stage]?.replicas} agreed
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
