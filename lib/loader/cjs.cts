// The CommonJS entry point (package.json exports["."].require): `require('heimdall-torch')` returns the very
// same module as `import` — not a second copy — through Node's require(esm) (unflagged since Node 20.19 and
// 22.12). One copy matters here: the addon, libtorch and the tracker's worker threads and exit handlers are
// process-wide, and `instanceof` checks (errors, models) must hold across CJS and ESM callers.
const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
if (major < 20 || (major === 20 && minor < 19) || (major === 21) || (major === 22 && minor < 12)) {
  throw new Error(
    `heimdall-torch: require() needs Node.js ≥ 20.19 or ≥ 22.12 (this is ${process.versions.node}); ` +
      "upgrade Node, or load it with `await import('heimdall-torch')`.",
  );
}
import heimdall = require('../index.js');
export = heimdall;
