// Data: tokenizers, corpora and their splits, training batches and evaluation windows.
export * from './tokenizer.ts';
export * from './corpus.ts';
export * from './batches.ts';
