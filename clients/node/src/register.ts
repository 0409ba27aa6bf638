// node --import @breakerbox/node/register app.js: connects to the sidecar
// (BREAKERBOX_ADMIN, BREAKERBOX_PROXY) and routes the app's HTTP calls to the
// sidecar's upstreams through it, before the app's first line runs.
import { install } from './index.js';

try {
  await install();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
