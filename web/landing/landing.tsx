import { useEffect, useState } from 'react';
import { type ModelListing, parseModelListings, parseSwarmListing } from '../../shared/protocol/http.js';
import type { SwarmStatus } from '../../shared/protocol/messages.js';
import { connectSwarm } from '../net/socket.js';
import { ReadinessLine } from './readiness-line.js';

export function Landing() {
  const [models, setModels] = useState<readonly ModelListing[] | null>(null);
  const [swarm, setSwarm] = useState<SwarmStatus | null>(null);
  const [keyRequired, setKeyRequired] = useState(false);
  useEffect(() => {
    fetch('/api/swarm')
      .then((r) => r.json() as Promise<unknown>)
      .then((raw) => {
        const parsed = parseSwarmListing(raw);
        if (parsed.ok) setKeyRequired(parsed.value.apiKeyRequired);
      })
      .catch(() => {});
    fetch('/api/models')
      .then((r) => (r.ok ? (r.json() as Promise<unknown>) : []))
      .then((raw) => {
        const parsed = parseModelListings(raw);
        if (!parsed.ok) console.error(parsed.reason);
        setModels(parsed.ok ? parsed.value : []);
      })
      .catch(() => setModels([]));
    const socket = connectSwarm('requester');
    socket.on('swarm:status', setSwarm);
    // The status now and as volunteers come and go (at most once a second); again after each reconnect.
    socket.on('connect', () => socket.emit('status:subscribe'));
    return () => {
      socket.disconnect();
    };
  }, []);
  return (
    <main>
      <h1>webswarm</h1>
      <p>
        Language-model inference on donated browser GPUs. Each block of a model's layers runs on several volunteers' tabs, and an answer is
        accepted only where a majority of them agree, so one lying or broken volunteer cannot change it.
      </p>
      <p data-testid="online">
        {swarm === null ? (
          'Connecting to the swarm…'
        ) : (
          <>
            {swarm.volunteers} volunteer{swarm.volunteers === 1 ? '' : 's'} online; replicas per stage:{' '}
            <span className="nowrap">{swarm.replicasPerStage.join(' / ') || '—'}</span>
          </>
        )}
      </p>
      <ReadinessLine />
      <p className="row">
        <a className="button" href="/chat">
          Ask the swarm
        </a>
        <a className="button" href="/volunteer">
          Volunteer this tab
        </a>
        <a className="button" href="/dashboard">
          Dashboard
        </a>
      </p>
      <h2>Use it</h2>
      <p data-testid="api">
        An OpenAI-compatible API: <code>POST {location.origin}/v1/chat/completions</code>, <code>/v1/completions</code>,{' '}
        <code>/v1/responses</code>, <code>GET /v1/models</code> — existing clients work with <code>baseURL = {location.origin}/v1</code>
        {keyRequired ? ' and an API key from this server’s operator (Authorization: Bearer …)' : ''}. Every token carries its vote: the
        replicas of each stage that agreed on it, or, where the server computed a stage or a stage ran on one replica, a label that it is
        not verified.
      </p>
      <p>Let your site's visitors volunteer with one script tag (they are asked first):</p>
      <pre data-testid="embed-snippet">{`<script src="${location.origin}/embed.js" data-model="${models?.[0]?.modelId ?? 'MODEL'}" async></script>`}</pre>
      <h2>Models served here</h2>
      {models === null ? (
        <p>Loading…</p>
      ) : models.length === 0 ? (
        <p>No models are served.</p>
      ) : (
        <ul>
          {models.map((m) => (
            <li key={m.baseUrl}>
              {m.modelId}, cut into {m.stages} stages (<a href={`${m.baseUrl}/manifest.json`}>manifest</a>) —{' '}
              <a href={`/check?model=${encodeURIComponent(m.modelId)}`}>run it alone in this tab</a>
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}
