/**
 * The real Offgrid stack for the SDK's tests: its own gunicorn and Celery worker on an isolated
 * namespace (RabbitMQ vhost, MongoDB database, Redis db) over the services `./dev` started, so
 * it never collides with the Python suite. Started once by test/run.mjs; the test files read
 * {@link StackInfo} from the `OFFGRID_SDK_STACK` environment variable.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** What the tests need to reach the stack. */
export interface StackInfo {
  /** The web process. */
  url: string;
  /** A second web process on the same namespace with TOMBSTONE_HORIZON=2 (410 tests). */
  shortHorizonUrl: string;
  jwtSecret: string;
  adminKey: string;
  /** Seconds a gap waits before the batch fails. */
  gapTimeout: number;
}

/** The package root (clients/typescript), from build/test/support or test/support. */
export const PACKAGE_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return dir;
})();
/** The repository root. */
export const REPO_ROOT = resolve(PACKAGE_ROOT, "..", "..");

const NAMESPACE = process.env["OFFGRID_SDK_NAMESPACE"] ?? "offgrid_sdk";
const REDIS_DB = process.env["OFFGRID_SDK_REDIS_DB"] ?? "14";
const PYTHON = join(REPO_ROOT, ".venv", "bin", "python");

function serviceUrls(): Record<string, string> {
  const names = ["MONGODB_URL", "BROKER_URL", "REDIS_URL", "RABBITMQ_MANAGEMENT_URL"];
  const fromFile: Record<string, string> = {};
  const file = join(REPO_ROOT, ".dev", "app.env");
  if (existsSync(file)) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) fromFile[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  const urls: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[name] || fromFile[name];
    if (!value) throw new Error(`${name} is not set and not in .dev/app.env: run ./dev services first`);
    urls[name] = value;
  }
  return urls;
}

function withPath(url: string, path: string): string {
  const parsed = new URL(url);
  parsed.pathname = path;
  return parsed.toString();
}

async function resetVhost(managementUrl: string): Promise<void> {
  const parsed = new URL(managementUrl);
  const auth = "Basic " + Buffer.from(`${decodeURIComponent(parsed.username || "guest")}:${decodeURIComponent(parsed.password || "guest")}`).toString("base64");
  const base = `${parsed.protocol}//${parsed.host}/api`;
  const user = decodeURIComponent(parsed.username || "guest");
  await fetch(`${base}/vhosts/${NAMESPACE}`, { method: "DELETE", headers: { Authorization: auth } });
  const put = await fetch(`${base}/vhosts/${NAMESPACE}`, { method: "PUT", headers: { Authorization: auth } });
  if (!put.ok) throw new Error(`could not create vhost ${NAMESPACE}: ${put.status}`);
  const perm = await fetch(`${base}/permissions/${NAMESPACE}/${user}`, {
    method: "PUT",
    headers: { Authorization: auth, "Content-Type": "application/json" },
    body: JSON.stringify({ configure: ".*", write: ".*", read: ".*" }),
  });
  if (!perm.ok) throw new Error(`could not grant vhost ${NAMESPACE}: ${perm.status}`);
}

function python(code: string, env: Record<string, string>): void {
  const result = spawnSync(PYTHON, ["-c", code], { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`python failed: ${result.stderr}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolvePort(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A running stack; `stop()` ends every process it started. */
export interface Stack {
  info: StackInfo;
  env: Record<string, string>;
  stop(): Promise<void>;
}

function startProcess(name: string, args: string[], env: Record<string, string>): ChildProcess {
  const logDir = join(PACKAGE_ROOT, "test-results");
  mkdirSync(logDir, { recursive: true });
  const log = createWriteStream(join(logDir, `${name}.log`));
  const child = spawn(PYTHON, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    detached: true, // its own process group: stop() ends the whole group
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  return child;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }, 15_000);
  await exited;
  clearTimeout(timer);
}

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`web process exited with ${child.exitCode} (see test-results/)`);
    try {
      const reply = await fetch(`${url}/readyz`);
      if (reply.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url}/readyz did not answer 200 within 90 s`);
}

/** Start web ×2 and a worker on the SDK's namespace and wait until a batch gets applied. */
export async function startStack(): Promise<Stack> {
  const urls = serviceUrls();
  await resetVhost(urls["RABBITMQ_MANAGEMENT_URL"]!);
  const env: Record<string, string> = {
    MONGODB_URL: withPath(urls["MONGODB_URL"]!, `/${NAMESPACE}`),
    BROKER_URL: withPath(urls["BROKER_URL"]!, `/${NAMESPACE}`),
    REDIS_URL: withPath(urls["REDIS_URL"]!, `/${REDIS_DB}`),
    RABBITMQ_MANAGEMENT_URL: urls["RABBITMQ_MANAGEMENT_URL"]!,
    JWT_SECRET: randomBytes(32).toString("base64url"),
    ADMIN_API_KEY: randomBytes(32).toString("base64url"),
    GAP_TIMEOUT: "4",
    RATE_LIMIT_USER: "100000/minute",
    RATE_LIMIT_KEY: "100000/minute",
    RATE_LIMIT_ANONYMOUS: "100000/minute",
    LOG_LEVEL: "INFO",
  };
  python(
    "import os, pymongo, redis\n" +
      "c = pymongo.MongoClient(os.environ['MONGODB_URL'])\n" +
      `c.drop_database('${NAMESPACE}')\n` +
      "redis.Redis.from_url(os.environ['REDIS_URL']).flushdb()\n",
    env,
  );
  const [webPort, shortPort] = [await freePort(), await freePort()];
  const gunicorn = (port: number, workers: number) => [
    "-m", "gunicorn", "--bind", `127.0.0.1:${port}`, "--workers", String(workers), "--threads", "4",
    "api:create_app()",
  ];
  const web = startProcess("web", gunicorn(webPort, 2), env);
  const shortWeb = startProcess("web-short-horizon", gunicorn(shortPort, 1), {
    ...env,
    TOMBSTONE_HORIZON: "2",
  });
  const worker = startProcess(
    "worker",
    [
      "-m", "celery", "-A", "workers.celery_app:celery_app", "worker", "-Q", "sync,push,maintenance",
      "-n", `sdk-${process.pid}@%h`, "--without-mingle", "--without-gossip", "-c", "2", "--loglevel", "INFO",
    ],
    env,
  );
  const children = [web, shortWeb, worker];
  const stop = async () => {
    await Promise.all(children.map(stopProcess));
  };
  try {
    const url = `http://127.0.0.1:${webPort}`;
    const shortHorizonUrl = `http://127.0.0.1:${shortPort}`;
    await waitReady(url, web);
    await waitReady(shortHorizonUrl, shortWeb);
    const info: StackInfo = { url, shortHorizonUrl, jwtSecret: env["JWT_SECRET"]!, adminKey: env["ADMIN_API_KEY"]!, gapTimeout: 4 };
    await waitForWorker(info, worker);
    return { info, env, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitForWorker(info: StackInfo, worker: ChildProcess): Promise<void> {
  const { mintToken } = await import("./env.js");
  const token = mintToken(info.jwtSecret, "stack-probe");
  const push = await fetch(`${info.url}/v1/sync/push`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Prefer: "wait=30" },
    body: JSON.stringify({
      client_id: "stack-probe-client",
      mutations: [
        { id: 1, scope: "user:stack-probe", collection: "notes", key: "probe", op: "put", value: { ok: true }, hlc: `${Date.now()}-0000-stack-probe-client`, base_version: 0 },
      ],
    }),
  });
  let status = (await push.json()) as { batch_id: string; status: string };
  const deadline = Date.now() + 90_000;
  while (status.status !== "applied" && Date.now() < deadline) {
    if (worker.exitCode !== null) throw new Error(`worker exited with ${worker.exitCode} (see test-results/worker.log)`);
    await new Promise((r) => setTimeout(r, 500));
    const reply = await fetch(`${info.url}/v1/sync/batches/${status.batch_id}`, { headers: { Authorization: `Bearer ${token}` } });
    status = (await reply.json()) as typeof status;
  }
  if (status.status !== "applied") throw new Error(`the worker did not apply a probe batch within 90 s (${status.status})`);
}
