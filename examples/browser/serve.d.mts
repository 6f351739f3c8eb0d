// Types of serve.mjs, for test/browser.test.ts.
/** The page's files by URL path: index.html at '/', the bundle at '/main.js'. */
export function buildExample(): Promise<Map<string, { type: string; body: Uint8Array }>>;
/** Serves the built page on host:port (port 0: any free one). */
export function serveExample(options?: { host?: string; port?: number }): Promise<{ url: string; close(): Promise<void> }>;
