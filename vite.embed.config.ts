import { defineConfig } from 'vite';

// embed.js: the host pages' script tag, one self-contained classic script
// (an IIFE: no modules, no imports) written beside the web app in dist/.
export default defineConfig({
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: false,
    target: 'es2020',
    lib: { entry: 'web/widget/embed.ts', formats: ['iife'], name: 'webswarmEmbed', fileName: () => 'embed.js' },
  },
});
