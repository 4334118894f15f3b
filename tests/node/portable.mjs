// Drives kist's store transpiled by jco into OUT_DIR (`kist.js` there: the
// portable composition, or the store linked to the capabilities transpiled
// beside it) on a real store directory through the preview2 shim. Prints
// one JSON object for tests/tests/hosts.rs to check.
//   node portable.mjs STORE_DIR SCRATCH_DIR OUT_DIR
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  _createPreopenDescriptor,
  _setPreopens,
} from '@bytecodealliance/preview2-shim/filesystem';

const [storeDir, scratchDir, outDir] = process.argv.slice(2);
_setPreopens({ '/store': storeDir });
const { store, ingester } = await import(pathToFileURL(join(outDir, 'kist.js')).href);

/** The WIT error case a call failed with (jco throws it as `payload`). */
function errorTag(call) {
  try {
    call();
  } catch (e) {
    if (e.payload?.tag) return e.payload.tag;
    throw e;
  }
  throw new Error('the call succeeded');
}

const small = new TextEncoder().encode('hello from node');
const putDigest = ingester.put({
  data: small,
  expected: undefined,
  labels: [{ key: 'via', value: 'jco' }],
  holder: undefined,
});

// A 64 MiB blob through a writer in 1 MiB chunks, timed.
const chunk = new Uint8Array(1 << 20).map((_, i) => (i * 31) & 0xff);
const chunks = 64;
const native = createHash('sha256');
const started = process.hrtime.bigint();
const writer = ingester.openWriter('node-upload', {
  expectedSize: BigInt(chunks * chunk.length),
  expected: undefined,
  labels: [],
});
for (let i = 0; i < chunks; i++) {
  chunk[0] = i;
  writer.write(chunk);
  native.update(chunk);
}
const bigDigest = ingester.Writer.commit(writer, undefined, undefined, [{ key: 'via', value: 'jco' }]);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

// A 64 MiB file through `write-from`: the bytes go from the file to the
// store by the capabilities' `copier`, never through JavaScript arrays
// between the two components.
const file = new Uint8Array(64 << 20).map((_, i) => (i * 7 + (i >> 12)) & 0xff);
writeFileSync(`${scratchDir}/file`, file);
const source = _createPreopenDescriptor(scratchDir).openAt({}, 'file', {}, { read: true });
const fileStarted = process.hrtime.bigint();
const fileWriter = ingester.openWriter('node-file', {
  expectedSize: BigInt(file.length),
  expected: undefined,
  labels: [],
});
const copied = fileWriter.writeFrom(source, 0n, BigInt(file.length));
const fileDigest = ingester.Writer.commit(fileWriter, undefined, undefined, []);
const fileSeconds = Number(process.hrtime.bigint() - fileStarted) / 1e9;

const reader = store.openReader(putDigest);
const readBack = new TextDecoder().decode(reader.readAt(0n, reader.size()));
const walked = [];
const walker = store.walk(['labels.via==jco']);
for (let batch = walker.next(); batch.length > 0; batch = walker.next()) {
  walked.push(...batch.map((info) => info.digest));
}

console.log(JSON.stringify({
  put: putDigest,
  big: bigDigest,
  bigExpected: `sha256:${native.digest('hex')}`,
  readBack,
  walked: walked.sort(),
  notFound: errorTag(() => store.info(`sha256:${'0'.repeat(64)}`)),
  invalid: errorTag(() => store.info('sha256:nothex')),
  ingestMBps: (chunks * chunk.length) / 1e6 / seconds,
  file: fileDigest,
  fileExpected: `sha256:${createHash('sha256').update(file).digest('hex')}`,
  fileCopied: Number(copied),
  fileMBps: file.length / 1e6 / fileSeconds,
}));
