// Builds dist/esm (ES modules) and dist/cjs (CommonJS), each with its type
// declarations, with tsc: the same sources compiled twice.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', project], { stdio: 'inherit' });
}
// The package is "type": "module"; this marks dist/cjs's .js files as CommonJS.
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n');
