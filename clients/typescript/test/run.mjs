// `npm test`: start the SDK's own Offgrid stack (test/support/stack.ts) once, run every test
// file with node's test runner against it, and stop the stack whatever happens.
//   npm test                 unit + integration + property + browser tests
//   npm test -- unit         only the pure-core unit tests (no services needed)
//   npm test -- integration  (or property, browser) one group, with the stack
import { spawn } from "node:child_process";
import { readdirSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const groups = process.argv.slice(2).length ? process.argv.slice(2) : ["unit", "integration", "property", "browser"];
const files = [];
for (const group of groups) {
  const dir = join(root, "build", "test", group);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir).sort()) if (name.endsWith(".test.js")) files.push(join(dir, name));
}
if (files.length === 0) {
  console.error(`no test files for ${groups.join(", ")}: run npm run build:test first`);
  process.exit(2);
}

const needsStack = groups.some((g) => g !== "unit");
let stack = null;
const started = Date.now();
if (needsStack) {
  const { startStack } = await import(join(root, "build", "test", "support", "stack.js"));
  process.stdout.write("starting the SDK test stack (gunicorn ×2, celery worker) … ");
  stack = await startStack();
  console.log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${stack.info.url}`);
}

let code = 1;
try {
  code = await new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--test", "--test-reporter=spec", "--test-concurrency=1", "--test-timeout=600000", ...files],
      { stdio: "inherit", env: { ...process.env, OFFGRID_SDK_STACK: stack ? JSON.stringify(stack.info) : "" } },
    );
    child.on("exit", (status, signal) => resolve(status ?? (signal ? 1 : 0)));
  });
} finally {
  if (stack) await stack.stop();
  console.log(`npm test took ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
process.exit(code);
