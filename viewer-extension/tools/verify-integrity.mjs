// Checks a file against an npm/SRI integrity string (sha512-<base64>). Exit 1 on a mismatch.
// Usage: node tools/verify-integrity.mjs <file> <integrity>
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

const [file, integrity] = process.argv.slice(2);
const match = /^(sha512|sha384|sha256)-([A-Za-z0-9+/=]+)$/.exec(integrity || '');
if (!file || !match) {
  console.error('usage: verify-integrity.mjs <file> <sha512-base64>');
  process.exit(2);
}
const hash = createHash(match[1]);
for await (const chunk of createReadStream(file)) {
  hash.update(chunk);
}
const actual = `${match[1]}-${hash.digest('base64')}`;
if (actual !== integrity) {
  console.error(`verify-integrity: ${file}\n  expected ${integrity}\n  actual   ${actual}`);
  process.exit(1);
}
console.log(`verify-integrity: ${file} OK (${match[1]})`);
