// A worker process of `runGrid` (pool.ts): sets up its backend, then executes the tasks the parent
// sends, one at a time, in the run folders the parent prepared. Task kinds: 'lm' (a training run
// and its evaluations, lm.ts) and 'regression' (one cell of the in-context regression, regression.ts).
import '../backends/index.ts'; // registers the backends (this process does not load the package root)
import { getBackend, prepareBackend, setBackend } from '../core/engine.ts';
import { NativeBackend } from '../backends/native/backend.ts';
import { runLm, type LmRunSpec } from './lm.ts';
import { runRegressionCell, type CellOptions } from './regression.ts';
import type { FromWorker, ToWorker, WorkerSetup } from './pool.ts';
import type { RunContext } from './runner.ts';

const TASKS: Record<string, (arg: unknown, ctx: RunContext) => unknown> = {
  lm: (arg, ctx) => runLm(arg as LmRunSpec, ctx),
  regression: (arg) => runRegressionCell(arg as CellOptions),
};

const send = (m: FromWorker): void => { if (process.connected) process.send!(m); };

const setup = JSON.parse(process.argv[2] ?? '{}') as WorkerSetup;
// A GPU backend's set-up is asynchronous; 'ready' (below) is sent only once it is done.
if (setup.backend) { await prepareBackend(setup.backend); setBackend(setup.backend); }
if (setup.threads !== undefined) {
  const b = getBackend();
  if (b instanceof NativeBackend) b.setThreads(setup.threads);
}

let abort = new AbortController();
// Ctrl-C reaches the whole process group; the parent decides (it sends 'abort'), and a signal
// here stops the current run the same way.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => abort.abort());
process.on('disconnect', () => process.exit(0));

process.on('message', async (m: ToWorker) => {
  if (m.type === 'abort') { abort.abort(); return; }
  if (m.type !== 'run') return;
  abort = new AbortController();
  const fn = TASKS[m.task.kind];
  try {
    if (!fn) throw new Error(`worker: unknown task kind '${m.task.kind}'`);
    const ctx: RunContext = {
      dir: m.dir, resuming: m.resuming, signal: abort.signal,
      progress: (fraction, detail) => send({ type: 'progress', fraction, detail }),
      log: (message) => send({ type: 'log', message }),
    };
    const result = await fn(m.task.arg, ctx);
    send({ type: 'done', result });
  } catch (e) {
    send({ type: 'error', message: e instanceof Error ? e.message : String(e), stack: e instanceof Error ? e.stack : undefined, aborted: abort.signal.aborted });
  }
});
send({ type: 'ready' });
