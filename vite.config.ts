import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Multi-page app: / (landing) and /check (the model run in one tab). Later
// issues add /volunteer, /chat, /dashboard and /embed here.
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
      },
    },
  },
  worker: { format: 'es' },
});
