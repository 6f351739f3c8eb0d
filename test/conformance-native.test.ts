// The conformance suite (conformance.ts) on the native backend, every fused kernel in use.
import { conformance } from './conformance.ts';

conformance('native');
