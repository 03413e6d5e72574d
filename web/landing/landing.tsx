import { useEffect, useState } from 'react';

interface ModelListing {
  readonly modelId: string;
  readonly stages: number;
  readonly baseUrl: string;
}

export function Landing() {
  const [models, setModels] = useState<ModelListing[] | null>(null);
  useEffect(() => {
    fetch('/api/models')
      .then((r) => (r.ok ? (r.json() as Promise<ModelListing[]>) : []))
      .then(setModels)
      .catch(() => setModels([]));
  }, []);
  return (
    <main>
      <h1>webswarm</h1>
      <p>
        Language-model inference on donated browser GPUs. Each block of a model's layers runs on several volunteers' tabs, and an answer is
        accepted only where a majority of them agree.
      </p>
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
              <a href={`/check?model=${encodeURIComponent(m.modelId)}`}>run it in this tab</a>
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}
