// A worker thread that runs one TypeScript module (workerData.entry, a file
// URL). Node loads a worker's entry itself, without the TypeScript loader of
// the process that made it (tsx under `npm start`, Vite's transform under
// Vitest), so this plain-JavaScript entry asks tsx for that module.
import { workerData } from 'node:worker_threads';

const { tsImport } = await import('tsx/esm/api');
await tsImport(workerData.entry, import.meta.url);
