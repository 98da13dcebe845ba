// Tauri's mocks install themselves on `window`; the store tests run in Node, where the global
// object can stand in for it.
if (typeof window === 'undefined') Object.assign(globalThis, { window: globalThis });
