import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Multi-page app: / (landing), /check (the model run in one tab), /volunteer,
// /chat, /dashboard, /embed (the widget's frame) and /consent (the window
// where the widget's consent is given). embed.js is built apart
// (vite.embed.config.ts).
export default defineConfig({
  root: 'web',
  plugins: [react()],
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: {
        index: 'web/index.html',
        check: 'web/check/index.html',
        volunteer: 'web/volunteer/index.html',
        chat: 'web/chat/index.html',
        embed: 'web/embed/index.html',
        consent: 'web/consent/index.html',
        dashboard: 'web/dashboard/index.html',
      },
    },
  },
  worker: { format: 'es' },
});
