// The browser example: trains a tiny Cubit language model on WebGPU in the page, drawing the loss
// as it goes, then generates text from it. `?selfcheck` trains a few steps on its own and reports
// PASS/FAIL in document.title and one console line (test/browser.test.ts reads them).
// Bundled by serve.mjs (esbuild) from the package's browser entry, src/browser.ts.
import { AdamW, Decoder, generate, getBackend, prepareBackend, Rng, setBackend, tensor, tidy, type Tensor } from '../../src/browser.ts';

// A short text of our own, repetitive enough that a model of some ten thousand parameters learns
// its letters and common words within a few hundred steps.
const TEXT = `A cubit is the length of a forearm, from the elbow to the tip of the middle finger.
Builders measured walls and doors and boats in cubits, and a careful builder kept a rod of the
right length beside the work. Two cubits make a step, four cubits make a tall man, and a hundred
cubits make a long wall. The wall was long and the door was wide, and the boat was three hundred
cubits long. The builder measured the wall, then the door, then the boat, and wrote the numbers
down. A cubit of one city was not the cubit of the next city, so the builders of each city kept
their own rod, and the rod was the law of the wall and the door and the boat.
`;

const SELFCHECK = new URLSearchParams(location.search).has('selfcheck');
// The self-check is sized for a software adapter (SwiftShader in CI, where each step takes
// seconds): one layer, a few steps, a short sample.
const SETTINGS = SELFCHECK ? { layers: 1, batch: 4, steps: 15, lr: 2e-2, newTokens: 40 } : { layers: 2, batch: 8, steps: 300, lr: 1e-2, newTokens: 200 };
const T = 32; // tokens per sequence
const B = SETTINGS.batch; // sequences per step

const chars = [...new Set(TEXT)].sort();
const ids = Int32Array.from(TEXT, (c) => chars.indexOf(c));
const encode = (s: string) => [...s].map((c) => chars.indexOf(c)).filter((i) => i >= 0);
const decode = (tokens: readonly number[]) => tokens.map((i) => chars[i] ?? '').join('');

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const statusEl = $<HTMLParagraphElement>('status');
const canvas = $<HTMLCanvasElement>('loss');
const sampleEl = $<HTMLPreElement>('sample');
const trainButton = $<HTMLButtonElement>('train');
const promptInput = $<HTMLInputElement>('prompt');

function say(text: string, state: 'checking' | 'ready' | 'training' | 'done' | 'unavailable' | 'error'): void {
  statusEl.textContent = text;
  statusEl.dataset.state = state;
}

/** Why WebGPU cannot run here, in words for the page, or null when an adapter is available. */
async function webgpuProblem(): Promise<string | null> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!window.isSecureContext) return 'WebGPU is unavailable: the page is not a secure context (serve it from http://localhost or https).';
  if (!gpu) return 'WebGPU is unavailable: this browser has no navigator.gpu (a recent Chrome, Edge or Safari has it; Firefox needs dom.webgpu.enabled).';
  let adapter: unknown = null;
  try { adapter = await gpu.requestAdapter(); } catch (e) { return `WebGPU is unavailable: requestAdapter failed (${(e as Error).message}).`; }
  if (!adapter) return 'WebGPU is unavailable: the browser found no GPU adapter (it may be blocklisted; in Chrome see chrome://gpu).';
  return null;
}

/** The loss curve: every step's loss, y from 0 to the first loss. */
function drawLoss(losses: readonly number[], steps: number): void {
  const ctx = canvas.getContext('2d');
  if (!ctx || losses.length === 0) return;
  const { width: w, height: h } = canvas;
  const pad = 30;
  const top = Math.max(...losses);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = '#888';
  ctx.strokeRect(pad, 5, w - pad - 5, h - pad - 5);
  ctx.fillStyle = '#333';
  ctx.font = '11px sans-serif';
  ctx.fillText(top.toFixed(2), 2, 14);
  ctx.fillText('0', 2, h - pad);
  ctx.fillText(`step ${losses.length} of ${steps}`, pad + 4, h - 10);
  ctx.strokeStyle = '#c33';
  ctx.beginPath();
  losses.forEach((l, i) => {
    const x = pad + ((w - pad - 5) * i) / Math.max(1, steps - 1);
    const y = 5 + (h - pad - 5) * (1 - l / top);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

/** A batch of B random windows of the text: inputs and next-token targets, (B, T) each. */
function batch(rng: Rng): { inputs: Int32Array; targets: Int32Array } {
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const start = Math.floor(rng.next() * (ids.length - T - 1));
    inputs.set(ids.subarray(start, start + T), b * T);
    targets.set(ids.subarray(start + 1, start + T + 1), b * T);
  }
  return { inputs, targets };
}

/** Trains the model `steps` steps, reading each step's loss (the curve) as it goes. */
async function train(model: Decoder, steps: number, onStep: (losses: number[]) => void): Promise<number[]> {
  const rng = new Rng(1);
  const named = model.namedParameters();
  const optimizer = new AdamW(named, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 });
  const losses: number[] = [];
  try {
    for (let s = 0; s < steps; s++) {
      const { inputs, targets } = batch(rng);
      const loss: Tensor = tidy(() => {
        const l = model.loss(tensor(inputs, [B, T]), tensor(targets, [B, T]));
        l.backward();
        return l.detach();
      });
      const [value] = await loss.data();
      loss.dispose();
      // Warm up over the first tenth, then a straight line down to a tenth of the peak.
      const lr = SETTINGS.lr * Math.min(1, (s + 1) / Math.max(1, steps / 10)) * (1 - 0.9 * (s / steps));
      optimizer.update(lr);
      for (const [, p] of named) { p.grad?.dispose(); p.grad = null; }
      losses.push(value);
      onStep(losses);
    }
  } finally {
    optimizer.dispose();
  }
  return losses;
}

const MODEL = { vocabSize: chars.length, dModel: 32, nLayers: SETTINGS.layers, nHeads: 2, mixer: 'cubit' } as const;

/** Trains a fresh model, then continues the prompt box's text (its characters the text has). */
async function run(steps: number): Promise<{ losses: number[]; text: string; tokens: number; seconds: number }> {
  trainButton.disabled = true;
  const model = new Decoder(MODEL, 7);
  try {
    const t0 = performance.now();
    say(`Training ${steps} steps on ${model.numParameters()} parameters…`, 'training');
    const losses = await train(model, steps, (l) => {
      drawLoss(l, steps);
      say(`Training: step ${l.length} of ${steps}, loss ${l[l.length - 1].toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`, 'training');
    });
    const span = `loss ${losses[0].toFixed(3)} → ${losses[losses.length - 1].toFixed(3)}`;
    say(`Trained ${steps} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s (${span}). Generating…`, 'training');
    const typed = encode(promptInput.value);
    const prompt = typed.length > 0 ? typed : [ids[0]];
    const g = await generate(model, prompt, { maxNewTokens: SETTINGS.newTokens, temperature: 0.8, topK: 10, seed: 3 });
    sampleEl.textContent = decode(prompt) + decode(g.tokens);
    const seconds = (performance.now() - t0) / 1000;
    say(`Done in ${seconds.toFixed(1)} s on ${getBackend().name}: ${span}; the text below was generated.`, 'done');
    return { losses, text: decode(g.tokens), tokens: g.tokens.length, seconds };
  } finally {
    model.dispose();
    trainButton.disabled = false;
  }
}

function report(pass: boolean, detail: Record<string, unknown>): void {
  document.title = `cubit selfcheck: ${pass ? 'PASS' : 'FAIL'}`;
  console.log(`cubit-selfcheck ${pass ? 'PASS' : 'FAIL'} ${JSON.stringify(detail)}`);
}

async function main(): Promise<void> {
  say('Checking for WebGPU…', 'checking');
  const problem = await webgpuProblem();
  if (problem) {
    say(problem, 'unavailable');
    if (SELFCHECK) report(false, { reason: problem });
    return;
  }
  await prepareBackend('webgpu');
  setBackend('webgpu');
  say(`WebGPU is ready. The model: Cubit, ${MODEL.nLayers} layer${MODEL.nLayers > 1 ? 's' : ''}, d = ${MODEL.dModel}, a vocabulary of the text's ${chars.length} characters.`, 'ready');
  trainButton.disabled = false;
  trainButton.onclick = () => { run(SETTINGS.steps).catch(fail); };
  if (!SELFCHECK) return;
  const r = await run(SETTINGS.steps);
  const first = r.losses[0], last = r.losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  // The loss starts near ln(vocabulary); a few steps must bring the last five below 85% of it.
  const pass = r.losses.every(Number.isFinite) && last < 0.85 * first && r.tokens === SETTINGS.newTokens;
  report(pass, { backend: getBackend().name, steps: SETTINGS.steps, firstLoss: first, lastLoss: last, tokens: r.tokens, tokensAsked: SETTINGS.newTokens, seconds: r.seconds, sample: r.text });
}

function fail(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  say(`Error: ${message}`, 'error');
  if (SELFCHECK) report(false, { reason: message });
  console.error(e);
}

main().catch(fail);
