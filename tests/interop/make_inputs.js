#!/usr/bin/env node
// Writes Fashion-MNIST images as .npy inputs for the interop tests:
//
//   node tests/interop/make_inputs.js OUT_DIR --set test|train [--count N] [--offset K]
//                                     [--dataset DIR]
//
// Images K .. K+N-1 of the IDX file (DIR/t10k-images-idx3-ubyte.gz or
// train-images-idx3-ubyte.gz; DIR defaults to /usr/share/datasets/fashion-mnist,
// Debian's dataset-fashion-mnist) become OUT_DIR/sample_000.npy, ...: float32
// [1, 1, 28, 28], normalised as models/fashion_mnist_cnn.onnx expects,
// (pixel / 255 - 0.2860) / 0.3530. Only node's standard library (zlib).
'use strict';

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

function fail(message) {
  process.stderr.write(`make_inputs: error: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
const opt = { out: null, set: null, count: 16, offset: 0, dataset: '/usr/share/datasets/fashion-mnist' };
for (let i = 0; i < args.length; ++i) {
  const a = args[i];
  const next = () => {
    if (i + 1 >= args.length) fail(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--set') opt.set = next();
  else if (a === '--count') opt.count = Number(next());
  else if (a === '--offset') opt.offset = Number(next());
  else if (a === '--dataset') opt.dataset = next();
  else if (a.startsWith('-')) fail(`unknown option ${a}`);
  else opt.out = a;
}
if (!opt.out || !['test', 'train'].includes(opt.set)) {
  fail('usage: make_inputs.js OUT_DIR --set test|train [--count N] [--offset K] [--dataset DIR]');
}
if (!Number.isInteger(opt.count) || opt.count < 1 || !Number.isInteger(opt.offset) || opt.offset < 0) {
  fail('--count must be >= 1 and --offset >= 0');
}

const file = path.join(opt.dataset, opt.set === 'test' ? 't10k-images-idx3-ubyte.gz' : 'train-images-idx3-ubyte.gz');
let idx;
try {
  idx = zlib.gunzipSync(fs.readFileSync(file));
} catch (e) {
  fail(`${file}: ${e.code || e.message} (Debian package dataset-fashion-mnist)`);
}
if (idx.length < 16 || idx.readUInt32BE(0) !== 0x00000803) fail(`${file}: not an IDX3 uint8 image file`);
const [n, rows, cols] = [idx.readUInt32BE(4), idx.readUInt32BE(8), idx.readUInt32BE(12)];
if (idx.length !== 16 + n * rows * cols) fail(`${file}: holds ${idx.length} bytes, header says ${n}x${rows}x${cols}`);
if (opt.offset + opt.count > n) fail(`${file} has ${n} images; asked for ${opt.offset}..${opt.offset + opt.count - 1}`);

function npy(shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  header = header.padEnd(Math.ceil((10 + header.length + 1) / 64) * 64 - 11, ' ') + '\n';
  const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
  prefix.writeUInt16LE(header.length, 8);
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer)]);
}

fs.mkdirSync(opt.out, { recursive: true });
const size = rows * cols;
for (let k = 0; k < opt.count; ++k) {
  const pixels = idx.subarray(16 + (opt.offset + k) * size, 16 + (opt.offset + k + 1) * size);
  // float32 at every step, as torchvision computes it (ToTensor, then Normalize).
  const f = Math.fround;
  const data = Float32Array.from(pixels, (p) => f(f(f(p / 255) - f(0.286)) / f(0.353)));
  const name = `sample_${String(k).padStart(3, '0')}.npy`;
  fs.writeFileSync(path.join(opt.out, name), npy([1, 1, rows, cols], data));
}
