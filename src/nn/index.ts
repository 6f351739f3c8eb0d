export { Module } from './module.ts';
export { Embedding, Linear, RMSNorm, SwiGLU } from './layers.ts';
export { Rotary } from './rotary.ts';
export { normalInit, constantInit } from './init.ts';
