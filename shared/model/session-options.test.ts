import { describe, expect, it } from 'vitest';
import type { ValueSpec } from './onnx-graph.js';
import { stageSessionOptions } from './session-options.js';

const outputs: ValueSpec[] = [
  { name: 'hidden_states', dtype: 'float32', shape: ['batch', 'sequence', 64] },
  { name: 'present.2.key', dtype: 'float32', shape: ['batch', 2, 'total_sequence', 16] },
  { name: 'present.2.value', dtype: 'float32', shape: ['batch', 2, 'total_sequence', 16] },
];

describe('stageSessionOptions', () => {
  it('on WebGPU leaves exactly the present.* outputs in GPU buffers; the main output is read back', () => {
    expect(stageSessionOptions('webgpu', { outputs })).toEqual({
      executionProviders: ['webgpu'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      preferredOutputLocation: { 'present.2.key': 'gpu-buffer', 'present.2.value': 'gpu-buffer' },
    });
  });

  it('on WASM (and onnxruntime-node’s CPU) keeps everything on the host', () => {
    for (const backend of ['wasm', 'cpu'] as const) {
      expect(stageSessionOptions(backend, { outputs })).toEqual({
        executionProviders: [backend],
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
      });
    }
  });
});
