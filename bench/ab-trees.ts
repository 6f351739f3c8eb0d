// An A/B of this tree against another checkout of cubit (a worktree of an older commit, with its
// node_modules and its addon built), in one process: both trees' modules and addons are loaded, and
// each round times one step of each side, in alternating order, so that both see the same machine
// load (on a shared machine only such paired ratios mean anything). Per case one JSON line: the
// medians of process CPU ms, and the median and range of the per-round ratios new/base (CPU, wall).
// The cases are `cubit bench mixer`'s T = 1024 shape and `cubit bench train`'s T = 128 steps (and a
// local linear model's), one thread.
// Usage: node --import tsx bench/ab-trees.ts <other-checkout> [rounds, default 12] [filter: cases whose name contains it]
//   e.g. git worktree add /tmp/base 38cb747 && cp -r node_modules /tmp/base && (cd /tmp/base && npm run build:native)
import path from 'node:path';

const other = process.argv[2];
if (!other) { console.error('usage: node --import tsx bench/ab-trees.ts <other-checkout> [rounds] [filter]'); process.exit(2); }
const ROUNDS = Number(process.argv[3] ?? 12);
const FILTER = process.argv[4] ?? '';
const trees = { base: path.resolve(other), new: path.resolve(import.meta.dirname, '..') } as const;
type Side = keyof typeof trees;
const sides = Object.keys(trees) as Side[];
// The two trees' modules are loaded by path at run time: their types are not this tree's to check.
const libs: Record<string, any> = {};
for (const s of sides) {
  const lib = await import(`${trees[s]}/src/index.ts`);
  const { Decoder } = await import(`${trees[s]}/src/models/decoder.ts`);
  const { clipGradNorm } = await import(`${trees[s]}/src/train/clip.ts`);
  const { AdamW } = await import(`${trees[s]}/src/train/optimizer.ts`);
  const be = lib.setBackend('native');
  be.setThreads(1);
  libs[s] = { lib, Decoder, clipGradNorm, AdamW, be };
}
function mixerCase(s: Side, mixer: string, B: number, H: number, T: number, D: number): () => void {
  const { lib } = libs[s];
  return lib.withBackend('native', () => {
    const leaf = (t: any) => { t.requiresGrad = true; return t.keep(); };
    const x = (seed: number) => leaf(lib.randn([B, H, T, D], { seed }));
    const g = lib.randn([B, H, T, D], { seed: 99 }).keep();
    const drop = (ts: any[]) => { for (const t of ts) if (t.grad) { t.grad.dispose(); t.grad = null; } };
    if (mixer === 'softmax') {
      const q = x(1), k = x(2), v = x(3);
      return () => { lib.tidy(() => { lib.softmaxAttention(q, k, v).backward(g); }); drop([q, k, v]); };
    }
    const inputs = { q: x(1), k: x(2), v: x(3), r: x(4), lrrLogits: leaf(lib.randn([B, H, T], { seed: 5 })),
      refScale: leaf(lib.full([H], 1)), logLambda: leaf(lib.full([H], Math.log(1e-6))), lrrLower: leaf(lib.full([H], 0.5)), lrrRange: leaf(lib.full([H], 1.5)) };
    return () => { lib.tidy(() => { lib.cubitAttention(inputs).output.backward(g); }); drop(Object.values(inputs)); };
  });
}
function trainCase(s: Side, mixer: string, B: number, T: number): () => void {
  const { lib, Decoder, clipGradNorm, AdamW } = libs[s];
  return lib.withBackend('native', () => {
    const m = new Decoder({ vocabSize: 256, dModel: 128, nLayers: 4, nHeads: 4, ffnHidden: 512, mixer }, 0);
    const rng = new lib.Rng(1);
    const ids = lib.tensor(Int32Array.from({ length: B * T }, () => rng.int(256)), [B, T]).keep();
    const tg = lib.tensor(Int32Array.from({ length: B * T }, () => rng.int(256)), [B, T]).keep();
    const params = m.parameters();
    const opt = new AdamW(m.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    return () => { lib.tidy(() => { m.loss(ids, tg).backward(); }); clipGradNorm(params, 1); opt.update(1e-3); for (const p of params) if (p.grad) p.backend.fill(p.grad.storage, 0, 0, p.grad.size); };
  });
}
const cases: [string, (s: Side) => () => void, number][] = [
  ['mixer cubit B=4 H=4 T=1024 D=32', (s) => mixerCase(s, 'cubit', 4, 4, 1024, 32), 2 * ROUNDS],
  ['mixer softmax B=4 H=4 T=1024 D=32', (s) => mixerCase(s, 'softmax', 4, 4, 1024, 32), 2 * ROUNDS],
  ['train cubit T=128 B=32', (s) => trainCase(s, 'cubit', 32, 128), ROUNDS],
  ['train softmax T=128 B=32', (s) => trainCase(s, 'softmax', 32, 128), ROUNDS],
  ['train local_linear T=128 B=32', (s) => trainCase(s, 'local_linear', 32, 128), ROUNDS],
];
const med = (a: number[]) => { const b = [...a].sort((x, y) => x - y); return b.length % 2 ? b[(b.length - 1) / 2] : (b[b.length / 2 - 1] + b[b.length / 2]) / 2; };
for (const [name, make, rounds] of cases) {
  if (!name.includes(FILTER)) continue;
  const run = { base: make('base'), new: make('new') };
  for (const s of sides) { run[s](); run[s](); } // warm-up
  const cpu: Record<Side, number[]> = { base: [], new: [] }, wall: Record<Side, number[]> = { base: [], new: [] };
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 ? [...sides].reverse() : sides) {
      const c0 = process.cpuUsage(), t0 = performance.now();
      run[s]();
      const c = process.cpuUsage(c0);
      wall[s].push(performance.now() - t0); cpu[s].push((c.user + c.system) / 1000);
    }
  }
  const ratios = (m: Record<Side, number[]>) => m.new.map((x, i) => x / m.base[i]);
  const rc = ratios(cpu), rw = ratios(wall);
  console.log(JSON.stringify({ case: name, rounds, cpu_ms: { base: +med(cpu.base).toFixed(1), new: +med(cpu.new).toFixed(1) }, cpu_ratio_median: +med(rc).toFixed(3),
    cpu_ratio_range: [+Math.min(...rc).toFixed(3), +Math.max(...rc).toFixed(3)], wall_ratio_median: +med(rw).toFixed(3), wall_ratio_range: [+Math.min(...rw).toFixed(3), +Math.max(...rw).toFixed(3)] }));
}
