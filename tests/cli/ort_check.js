#!/usr/bin/env node
// Loads each model given on the command line into an ONNX Runtime session
// (graph resolution checks every node against its schema at the model's
// opset, and types along every edge): tests/cli/check_models.py uses it for
// opsets newer than Debian's onnx.checker knows. Prints "FAIL path: why" per
// model that does not load; exit status 1 if any.
'use strict';

const ort = require('onnxruntime-node');

(async () => {
  let failed = 0;
  for (const file of process.argv.slice(2)) {
    try {
      await ort.InferenceSession.create(file);
    } catch (e) {
      failed += 1;
      console.log(`${file}: ${String(e.message || e).split('\n')[0]}`);
    }
  }
  process.exit(failed ? 1 : 0);
})();
