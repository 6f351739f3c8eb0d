// Worker processes for `runGrid` with jobs > 1. Each worker is a child Node process running
// worker.ts; it executes one run's task at a time (a training run, a regression cell) inside the
// run folder the parent prepared, and reports progress, log lines and the result over IPC. The
// parent keeps every piece of bookkeeping (run.json, result.json, error.json): a run folder has
// one writer at a time. Aborting sends 'abort' to every worker: a training run then stops after
// its current step with a checkpoint, as it does on Ctrl-C in a serial run.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RunContext } from './runner.ts';

/** How a worker sets up its backend before running anything. */
export interface WorkerSetup {
  /** 'native' or 'reference' (default: the worker's default, native when built). */
  backend?: string;
  /** Native kernel threads per worker (default: the backend's default). */
  threads?: number;
}

export type ToWorker =
  | { type: 'run'; dir: string; resuming: boolean; task: { kind: string; arg: unknown } }
  | { type: 'abort' };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'progress'; fraction: number; detail: string }
  | { type: 'log'; message: string }
  | { type: 'done'; result: unknown }
  | { type: 'error'; message: string; stack?: string; aborted: boolean };

/** The worker script, beside this file (worker.ts from source, worker.js when compiled). */
function workerEntry(): { file: string; execArgv: string[] } {
  const here = import.meta.url;
  const ts = here.endsWith('.ts');
  const file = fileURLToPath(new URL(ts ? './worker.ts' : './worker.js', here));
  // From TypeScript sources the child needs the tsx loader (resolved from this package, so the
  // child does not depend on its working directory).
  return { file, execArgv: ts ? ['--import', import.meta.resolve('tsx')] : [] };
}

class Worker {
  readonly child: ChildProcess;
  busy = false;
  private current: { ctx: RunContext; resolve: (r: unknown) => void; reject: (e: Error) => void } | null = null;
  private exited: Error | null = null;

  constructor(setup: WorkerSetup) {
    const { file, execArgv } = workerEntry();
    this.child = fork(file, [JSON.stringify(setup)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.child.on('message', (m: FromWorker) => this.onMessage(m));
    this.child.on('exit', (code, signal) => {
      this.exited = new Error(`worker process ${this.child.pid} exited (${signal ?? `code ${code}`}) during a run`);
      this.current?.reject(this.exited);
      this.current = null;
    });
  }

  private onMessage(m: FromWorker): void {
    const c = this.current;
    if (!c) return;
    switch (m.type) {
      case 'progress': c.ctx.progress(m.fraction, m.detail); break;
      case 'log': c.ctx.log(m.message); break;
      case 'done': this.current = null; c.resolve(m.result); break;
      case 'error': {
        this.current = null;
        const e = new Error(m.message);
        if (m.stack) e.stack = m.stack;
        c.reject(e);
        break;
      }
    }
  }

  run(task: { kind: string; arg: unknown }, ctx: RunContext): Promise<unknown> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      this.current = { ctx, resolve, reject };
      this.send({ type: 'run', dir: ctx.dir, resuming: ctx.resuming, task });
    });
  }

  send(m: ToWorker): void {
    if (this.child.connected) this.child.send(m);
  }
}

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly waiting: ((w: Worker) => void)[] = [];

  constructor(readonly size: number, readonly setup: WorkerSetup) {}

  /** Runs a task in a free worker (started on first need); rejects when the run fails. */
  async execute(task: { kind: string; arg: unknown }, ctx: RunContext): Promise<unknown> {
    const w = await this.acquire();
    const onAbort = (): void => w.send({ type: 'abort' });
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    if (ctx.signal?.aborted) onAbort();
    try {
      return await w.run(task, ctx);
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort);
      this.releaseWorker(w);
    }
  }

  private acquire(): Promise<Worker> {
    const free = this.workers.find((w) => !w.busy && w.child.exitCode === null && w.child.signalCode === null);
    if (free) { free.busy = true; return Promise.resolve(free); }
    const alive = this.workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
    if (alive.length < this.size) {
      const w = new Worker(this.setup);
      this.workers.push(w);
      w.busy = true;
      return Promise.resolve(w);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private releaseWorker(w: Worker): void {
    const next = this.waiting.shift();
    if (next) next(w);
    else w.busy = false;
  }

  /** Ends every worker (they exit when their IPC channel closes). */
  close(): void {
    for (const w of this.workers) if (w.child.connected) w.child.disconnect();
  }
}
