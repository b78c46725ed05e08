#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU execution
// provider) on .npy inputs and writes its outputs as .npy files: the
// reference kvant's QDQ models are checked against (tests/interop/).
//
//   node scripts/ort_run.js MODEL.onnx --input NAME=FILE.npy [...] --output-dir DIR
//   node scripts/ort_run.js MODEL.onnx --inputs-dir DIR --output-dir DIR
//   node scripts/ort_run.js MODEL.onnx --inputs-dir DIR --bench 20
//
// Options:
//   --input NAME=FILE.npy  an input (repeat); a one-input model also takes FILE.npy
//   --inputs-dir DIR       every model input NAME read from DIR/NAME.npy
//   --output-dir DIR       each output written to DIR/<output name>.npy (created if
//                          missing; characters other than [A-Za-z0-9._-] become '_')
//   --threads N            intra-op threads (default 1); graph optimizations stay
//                          at ONNX Runtime's default level
//   --opt-level L          graph optimization level: disabled, basic, extended or all
//                          (default: ONNX Runtime's default, all); for diagnosis
//   --config KEY=VALUE     a session config entry (e.g.
//                          session.qdq_matmulnbits_accuracy_level=0); repeatable
//   --bench RUNS           one warm-up run, then RUNS timed runs; prints one JSON
//                          line {"runs":..,"threads":..,"median_ms":..,"min_ms":..,
//                          "cpu_ms_per_run":.. (process CPU time, all threads)}
//   --save-optimized FILE  writes the graph ONNX Runtime runs (after its graph
//                          optimizations, e.g. QDQ -> QLinearConv fusion) to FILE;
//                          with no inputs, only loads the model and saves it
//
// ONNX Runtime comes from node_modules/onnxruntime-node at the repository root
// (scripts/install_deps.sh installs it). .npy files are read and written here:
// versions 1.0/2.0/3.0 are read, 1.0 is written; little-endian data, C order.
// Errors print one line "ort_run: error: ..." and exit with status 1.
'use strict';

const fs = require('fs');
const path = require('path');

function fail(message) {
  process.stderr.write(`ort_run: error: ${message}\n`);
  process.exit(1);
}

// NumPy descr (without the byte-order character) <-> ONNX Runtime tensor type.
const DTYPES = {
  f4: { ort: 'float32', array: Float32Array },
  f8: { ort: 'float64', array: Float64Array },
  f2: { ort: 'float16', array: Uint16Array },
  i1: { ort: 'int8', array: Int8Array },
  u1: { ort: 'uint8', array: Uint8Array },
  i2: { ort: 'int16', array: Int16Array },
  u2: { ort: 'uint16', array: Uint16Array },
  i4: { ort: 'int32', array: Int32Array },
  u4: { ort: 'uint32', array: Uint32Array },
  i8: { ort: 'int64', array: BigInt64Array },
  u8: { ort: 'uint64', array: BigUint64Array },
  b1: { ort: 'bool', array: Uint8Array },
};
const DESCR_OF_ORT = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [v.ort, k]));

// Parses a .npy file into {descr, shape, data (a typed array)}.
function readNpy(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    fail(`${file}: cannot read (${e.code || e.message})`);
  }
  const bad = (why) => fail(`${file}: not a valid .npy file: ${why}`);
  if (bytes.length < 10 || bytes.readUInt8(0) !== 0x93 || bytes.toString('latin1', 1, 6) !== 'NUMPY') {
    bad('missing the \\x93NUMPY magic');
  }
  const major = bytes.readUInt8(6);
  let headerLen;
  let headerStart;
  if (major === 1) {
    headerLen = bytes.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) bad('truncated header');
    headerLen = bytes.readUInt32LE(8);
    headerStart = 12;
  } else {
    bad(`unsupported version ${major}.${bytes.readUInt8(7)}`);
  }
  if (headerStart + headerLen > bytes.length) bad('header longer than the file');
  const header = bytes.toString(major === 3 ? 'utf8' : 'latin1', headerStart, headerStart + headerLen);
  const descrMatch = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const fortranMatch = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeMatch = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descrMatch || !fortranMatch || !shapeMatch) bad(`cannot parse the header ${JSON.stringify(header.trim())}`);
  if (fortranMatch[1] === 'True') bad('fortran_order=True is not supported');
  const descr = descrMatch[1];
  const order = descr[0];
  const code = descr.slice(1);
  if (!DTYPES[code] || !['<', '|', '='].includes(order)) bad(`unsupported dtype '${descr}'`);
  const shape = shapeMatch[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      if (!/^\d+$/.test(s)) bad(`bad shape entry '${s}'`);
      return Number(s);
    });
  const numel = shape.reduce((a, b) => a * b, 1);
  const { array } = DTYPES[code];
  const dataStart = headerStart + headerLen;
  const want = numel * array.BYTES_PER_ELEMENT;
  if (!Number.isSafeInteger(want) || bytes.length - dataStart !== want) {
    bad(`data is ${bytes.length - dataStart} bytes, shape [${shape}] of '${descr}' needs ${want}`);
  }
  // Copy into a fresh, aligned buffer.
  const buffer = new ArrayBuffer(want);
  new Uint8Array(buffer).set(bytes.subarray(dataStart, dataStart + want));
  return { descr, shape, data: new array(buffer) };
}

// Serializes {ortType, shape, data} as .npy version 1.0.
function encodeNpy(type, shape, data, what) {
  const code = DESCR_OF_ORT[type];
  if (!code) fail(`${what}: ONNX Runtime type '${type}' has no .npy equivalent here`);
  const descr = (code === 'i1' || code === 'u1' || code === 'b1' ? '|' : '<') + code;
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 10 - 1, ' ') + '\n';
  if (header.length > 0xffff) fail(`${what}: shape too long for a version 1.0 .npy header`);
  const prefix = Buffer.alloc(10);
  prefix.writeUInt8(0x93, 0);
  prefix.write('NUMPY', 1, 'latin1');
  prefix.writeUInt8(1, 6);
  prefix.writeUInt8(0, 7);
  prefix.writeUInt16LE(header.length, 8);
  let body;
  if (type === 'bool' && !(data instanceof Uint8Array)) {
    body = Buffer.from(Uint8Array.from(data, (v) => (v ? 1 : 0)));
  } else {
    body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), body]);
}

function writeFileAtomic(file, bytes) {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch (_) {
      // nothing left behind
    }
    fail(`${file}: cannot write (${e.code || e.message})`);
  }
}

function parseArgs(argv) {
  const opt = { model: null, inputs: [], inputsDir: null, outputDir: null, threads: 1, bench: 0, optLevel: null, config: {}, saveOptimized: null };
  const value = (i, flag) => {
    if (i + 1 >= argv.length) fail(`${flag} needs a value`);
    return argv[i + 1];
  };
  const positiveInt = (text, flag) => {
    if (!/^\d+$/.test(text) || Number(text) < 1) fail(`${flag} must be a positive integer, got '${text}'`);
    return Number(text);
  };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(
        'usage: node scripts/ort_run.js MODEL.onnx (--input NAME=FILE.npy ... | --inputs-dir DIR)\n' +
          '       [--output-dir DIR] [--threads N] [--opt-level L] [--config KEY=VALUE] [--bench RUNS]\n' +
          '       [--save-optimized FILE]   (alone: load MODEL.onnx and save ORT\'s optimized graph)\n');
      process.exit(0);
    } else if (a === '--input' || a === '-i') {
      opt.inputs.push(value(i++, a));
    } else if (a === '--inputs-dir') {
      opt.inputsDir = value(i++, a);
    } else if (a === '--output-dir' || a === '-o') {
      opt.outputDir = value(i++, a);
    } else if (a === '--threads') {
      opt.threads = positiveInt(value(i++, a), a);
    } else if (a === '--opt-level') {
      opt.optLevel = value(i++, a);
      if (!['disabled', 'basic', 'extended', 'all'].includes(opt.optLevel)) {
        fail(`--opt-level must be disabled, basic, extended or all, got '${opt.optLevel}'`);
      }
    } else if (a === '--config') {
      const kv = value(i++, a);
      const eq = kv.indexOf('=');
      if (eq <= 0) fail(`--config needs KEY=VALUE, got '${kv}'`);
      opt.config[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === '--bench') {
      opt.bench = positiveInt(value(i++, a), a);
    } else if (a === '--save-optimized') {
      opt.saveOptimized = value(i++, a);
    } else if (a.startsWith('-')) {
      fail(`unknown option ${a}`);
    } else if (opt.model === null) {
      opt.model = a;
    } else {
      fail(`unexpected argument '${a}' (one model only)`);
    }
  }
  if (opt.model === null) fail('no model given (usage: ort_run.js MODEL.onnx --input NAME=FILE.npy --output-dir DIR)');
  const loadOnly = opt.saveOptimized !== null && opt.inputs.length === 0 && opt.inputsDir === null;
  if (loadOnly && opt.outputDir === null && opt.bench === 0) return opt;
  if (opt.outputDir === null && opt.bench === 0) fail('--output-dir is required (unless --bench)');
  if (opt.inputs.length === 0 && opt.inputsDir === null) fail('no inputs: give --input NAME=FILE.npy or --inputs-dir DIR');
  return opt;
}

function loadOrt() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    fail(
      `cannot load onnxruntime-node (${e.message.split('\n')[0]}); ` +
        'run scripts/install_deps.sh (npm ci --ignore-scripts at the repository root)');
  }
  return null;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opt.model)) fail(`${opt.model}: no such file`);
  const ort = loadOrt();

  let session;
  try {
    const options = {
      executionProviders: ['cpu'],
      intraOpNumThreads: opt.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    };
    if (opt.optLevel !== null) options.graphOptimizationLevel = opt.optLevel;
    // onnxruntime-node passes `extra` as session config entries, nested
    // objects joined with '.'.
    if (Object.keys(opt.config).length) options.extra = opt.config;
    if (opt.saveOptimized !== null) options.optimizedModelFilePath = path.resolve(opt.saveOptimized);
    session = await ort.InferenceSession.create(opt.model, options);
  } catch (e) {
    fail(`ONNX Runtime cannot load ${opt.model}: ${e.message}`);
  }
  if (opt.saveOptimized !== null && opt.inputs.length === 0 && opt.inputsDir === null) {
    if (!fs.existsSync(opt.saveOptimized)) fail(`ONNX Runtime did not write ${opt.saveOptimized}`);
    return;
  }
  const inputNames = session.inputNames;

  // Input files by name.
  const files = new Map();
  if (opt.inputsDir !== null) {
    if (!fs.existsSync(opt.inputsDir) || !fs.statSync(opt.inputsDir).isDirectory()) {
      fail(`--inputs-dir ${opt.inputsDir}: no such folder`);
    }
    for (const name of inputNames) {
      const file = path.join(opt.inputsDir, `${name}.npy`);
      if (fs.existsSync(file)) files.set(name, file);
    }
  }
  for (const spec of opt.inputs) {
    const eq = spec.indexOf('=');
    let name;
    let file;
    if (eq < 0) {
      if (inputNames.length !== 1) {
        fail(`--input ${spec}: the model has ${inputNames.length} inputs (${inputNames.join(', ')}); write NAME=FILE.npy`);
      }
      [name, file] = [inputNames[0], spec];
    } else {
      [name, file] = [spec.slice(0, eq), spec.slice(eq + 1)];
    }
    if (!inputNames.includes(name)) fail(`--input ${spec}: the model has no input "${name}" (inputs: ${inputNames.join(', ')})`);
    if (files.has(name) && opt.inputsDir === null) fail(`input "${name}" given twice`);
    files.set(name, file);
  }
  const missing = inputNames.filter((n) => !files.has(n));
  if (missing.length) {
    fail(`no data for input${missing.length > 1 ? 's' : ''} ${missing.map((n) => `"${n}"`).join(', ')}` +
      (opt.inputsDir !== null ? ` (looked for ${missing.map((n) => `${n}.npy`).join(', ')} in ${opt.inputsDir})` : ''));
  }
  const feeds = {};
  for (const [name, file] of files) {
    if (!fs.existsSync(file)) fail(`input "${name}": ${file}: no such file`);
    const npy = readNpy(file);
    feeds[name] = new ort.Tensor(DTYPES[npy.descr.slice(1)].ort, npy.data, npy.shape);
  }

  const run = async () => {
    try {
      return await session.run(feeds);
    } catch (e) {
      fail(`ONNX Runtime failed to run ${opt.model}: ${e.message}`);
    }
    return null;
  };

  let results;
  if (opt.bench > 0) {
    results = await run();  // warm-up
    const times = [];
    const cpu0 = process.cpuUsage();  // all threads of the process, µs
    for (let i = 0; i < opt.bench; ++i) {
      const t0 = process.hrtime.bigint();
      results = await run();
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const cpu = process.cpuUsage(cpu0);
    const round = (x) => Math.round(x * 1000) / 1000;
    process.stdout.write(JSON.stringify({
      model: opt.model, runtime: `onnxruntime-node ${ort.env.versions.node || ''}`.trim(), runs: opt.bench,
      threads: opt.threads, median_ms: round(median(times)), min_ms: round(Math.min(...times)),
      cpu_ms_per_run: round((cpu.user + cpu.system) / 1000 / opt.bench),
    }) + '\n');
  } else {
    results = await run();
  }

  if (opt.outputDir !== null) {
    try {
      fs.mkdirSync(opt.outputDir, { recursive: true });
    } catch (e) {
      fail(`--output-dir ${opt.outputDir}: cannot create the folder (${e.code || e.message})`);
    }
    if (!fs.statSync(opt.outputDir).isDirectory()) fail(`--output-dir ${opt.outputDir} is a file, not a folder`);
    for (const name of session.outputNames) {
      const t = results[name];
      if (!t) fail(`output "${name}" was not produced`);
      const file = path.join(opt.outputDir, `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.npy`);
      writeFileAtomic(file, encodeNpy(t.type, t.dims, t.data, `output "${name}"`));
      if (opt.bench === 0) process.stdout.write(`${name}  ${t.type}[${t.dims.join(',')}]  -> ${file}\n`);
    }
  }
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
