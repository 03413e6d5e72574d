import { type KeyboardEvent, useEffect, useRef, useState } from 'react';
import { parseSwarmListing } from '../../shared/protocol/http.js';
import type { SwarmStatus, TokenEvent } from '../../shared/protocol/messages.js';
import { connectSwarm, type SwarmSocket } from '../net/socket.js';
import { chatInputProblem } from './chat-input.js';
import { promptKeyAction } from './prompt-keys.js';
import { TokenOutput } from './token-output.js';
import { VotePanel } from './vote-panel.js';
import { isVerified, serverShareText } from './votes.js';

type RunState =
  | { readonly kind: 'running' }
  | { readonly kind: 'done'; readonly finishReason: string }
  | { readonly kind: 'failed'; readonly code: string; readonly message: string };

/** One generation: the prompt it was asked (kept with its output, whatever the box says later), its tokens and state. */
interface Run {
  readonly requestId: string;
  readonly prompt: string;
  readonly tokens: readonly TokenEvent[];
  readonly state: RunState;
}

export function ChatApp() {
  const socket = useRef<SwarmSocket | null>(null);
  const [swarm, setSwarm] = useState<SwarmStatus | null>(null);
  const [keyRequired, setKeyRequired] = useState(false);
  const [apiKey, setApiKey] = useState(() => sessionStorage.getItem('webswarm.apiKey') ?? '');
  const [prompt, setPrompt] = useState('It is a truth universally acknowledged, that');
  const [maxTokens, setMaxTokens] = useState(32);
  const [temperature, setTemperature] = useState(0);
  const [seed, setSeed] = useState(0);
  const [run, setRun] = useState<Run | null>(null);
  const [serverError, setServerError] = useState<{ code: string; message: string } | null>(null);
  const [selected, setSelected] = useState<number | null>(null);

  useEffect(() => {
    const s = connectSwarm('requester');
    socket.current = s;
    // Events of an earlier request (one replaced by a newer run) are ignored.
    const update = (requestId: string, f: (r: Run) => Run) => setRun((r) => (r !== null && r.requestId === requestId ? f(r) : r));
    s.on('swarm:status', setSwarm);
    s.on('connect', () => s.emit('status:subscribe')); // again after each reconnect
    s.on('chat:token', (t) => update(t.requestId, (r) => ({ ...r, tokens: [...r.tokens, t] })));
    s.on('chat:done', (d) => update(d.requestId, (r) => ({ ...r, state: { kind: 'done', finishReason: d.finishReason } })));
    s.on('chat:error', (e) => update(e.requestId, (r) => ({ ...r, state: { kind: 'failed', code: e.code, message: e.message } })));
    // The server went away mid-generation (it restarted, or it was one of a cluster and died): that run cannot
    // finish there; the page reconnects (to another server behind the same URL) and the prompt can be sent again.
    s.on('disconnect', () =>
      setRun((r) =>
        r?.state.kind === 'running'
          ? {
              ...r,
              state: {
                kind: 'failed',
                code: 'ERR_SHUTTING_DOWN',
                message: 'the connection to the server was lost mid-generation; send the prompt again',
              },
            }
          : r,
      ),
    );
    s.on('server:error', (e) => {
      setServerError({ code: e.code, message: e.message });
      setRun((r) => (r?.state.kind === 'running' ? { ...r, state: { kind: 'failed', code: e.code, message: e.message } } : r));
    });
    fetch('/api/swarm')
      .then((r) => r.json() as Promise<unknown>)
      .then((raw) => {
        const parsed = parseSwarmListing(raw);
        if (!parsed.ok) return console.error(parsed.reason);
        setSwarm(parsed.value);
        setKeyRequired(parsed.value.apiKeyRequired);
      })
      .catch(() => {});
    return () => {
      s.disconnect();
    };
  }, []);

  const running = run?.state.kind === 'running';
  const inputProblem = chatInputProblem({ prompt, maxTokens, temperature, seed });
  const send = () => {
    if (running || inputProblem !== null) return;
    const requestId = crypto.randomUUID();
    setRun({ requestId, prompt, tokens: [], state: { kind: 'running' } });
    setSelected(null);
    setServerError(null);
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
  const onPromptKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (
      promptKeyAction({ key: e.key, shiftKey: e.shiftKey, isComposing: e.nativeEvent.isComposing, keyCode: e.nativeEvent.keyCode }) !==
      'send'
    )
      return;
    e.preventDefault();
    send();
  };

  const tokens = run?.tokens ?? [];
  const verifiedCount = tokens.filter(isVerified).length;
  const last = tokens.at(-1);
  const chosen = selected === null ? undefined : tokens[selected];
  return (
    <main>
      <h1>webswarm chat</h1>
      <p className="small" data-testid="what-it-does">
        The model continues your text, one token at a time, each with the vote that verified it. Each Generate starts anew: for a
        conversation in the model's chat template, use the API's <code>/v1/chat/completions</code>.
      </p>
      <p data-testid="swarm">
        {swarm === null ? (
          'Connecting…'
        ) : (
          <>
            {swarm.volunteers} volunteer{swarm.volunteers === 1 ? '' : 's'} online; replicas per stage:{' '}
            <span className="nowrap">{swarm.replicasPerStage.join(' / ')}</span>
          </>
        )}
      </p>
      <label>
        Prompt <span className="small">(Enter sends, Shift+Enter for a new line)</span>
        <textarea data-testid="prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} onKeyDown={onPromptKey} rows={3} />
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
      <button type="button" data-testid="send" disabled={running || inputProblem !== null} onClick={send}>
        Generate
      </button>
      {inputProblem !== null && (
        <p className="small" role="status" data-testid="input-problem">
          {inputProblem}
        </p>
      )}
      <TokenOutput
        prompt={run?.prompt ?? ''}
        tokens={tokens}
        selected={selected}
        onSelect={(i) => setSelected((s) => (s === i ? null : i))}
      />
      {chosen !== undefined && <VotePanel token={chosen} onClose={() => setSelected(null)} />}
      <p data-testid="run-state">
        {run?.state.kind === 'running' && `generating… ${tokens.length} tokens`}
        {run?.state.kind === 'done' &&
          `done (${run.state.finishReason}): ${tokens.length} tokens, ${verifiedCount} verified by a majority at every stage` +
            (verifiedCount < tokens.length ? `; ${tokens.length - verifiedCount} not verified` : '') +
            serverShareText(tokens)}
        {run?.state.kind === 'failed' && `failed: ${run.state.code}: ${run.state.message}`}
        {run === null && serverError !== null && `failed: ${serverError.code}: ${serverError.message}`}
      </p>
      {last !== undefined && (
        <table>
          <caption>Route: who computed each stage, and the last token's vote</caption>
          <tbody>
            {last.route.map((ids, stage) => {
              const v = last.votes[stage];
              return (
                <tr key={ids.join()}>
                  <th>stage {stage}</th>
                  <td>{ids.map((id) => id.slice(0, 8)).join(', ')}</td>
                  <td>
                    {v === undefined
                      ? 'no vote'
                      : v.server
                        ? 'computed by the server (fallback), not by volunteers'
                        : `${v.agreed} agreed · ${v.disagreed} disagreed · ${v.missing} late, of ${v.replicas}`}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </main>
  );
}
