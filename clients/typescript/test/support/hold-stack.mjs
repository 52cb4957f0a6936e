// Development aid: start the SDK test stack, write its info to test-results/stack.json and
// keep it up until SIGTERM/SIGINT (then stop it). Lets one run single test files quickly:
//   OFFGRID_SDK_STACK="$(cat test-results/stack.json)" node --test build/test/integration/x.test.js
import { writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const { startStack } = await import(join(root, "build", "test", "support", "stack.js"));
const stack = await startStack();
writeFileSync(join(root, "test-results", "stack.json"), JSON.stringify(stack.info));
console.log("stack up", stack.info.url);
const stop = async () => { await stack.stop(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
setInterval(() => {}, 1 << 30);
