import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

// The supervisors' dashboard, served by feltbog-server at `/` with its assets under
// `/dashboard/assets/` and embedded in the server binary (sync-server/build.rs).
export default defineConfig({
  root: 'dashboard',
  base: '/dashboard/',
  // The root is dashboard/, so the shared svelte.config.js (runes) is named here.
  plugins: [svelte({ configFile: '../svelte.config.js' })],
  clearScreen: false,
  build: {
    outDir: '../dist-dashboard',
    emptyOutDir: true,
    target: 'es2022',
    // The server's CSP allows scripts and styles from its own origin only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
