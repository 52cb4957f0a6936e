// The demo's server: static files (this folder, and the SDK's compiled ESM at /sdk/), a
// development token endpoint (/token?user=… mints an HS256 JWT: never do this in production),
// and /v1/* proxied to an Offgrid API so the page talks to one origin.
//
//   node examples/web-todo/serve.mjs --api http://127.0.0.1:8000 --jwt-secret "$JWT_SECRET" [--port 5173]
//
// `npm run build` first (the SDK is served from dist/).
import { createHmac } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import { extname, join, normalize, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, "..", "..", "dist");
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css", ".json": "application/json" };

function mintToken(secret, sub) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

async function sdkFiles() {
  return (await readdir(DIST, { recursive: true })).filter((f) => f.endsWith(".js")).map((f) => `/sdk/${f.split("\\").join("/")}`);
}

/** Start the demo server; resolves to { url, close() }. */
export async function startServer({ api, jwtSecret, port = 0, host = "127.0.0.1" }) {
  const apiUrl = new URL(api);
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    try {
      if (url.pathname.startsWith("/v1/")) {
        // agent: false: no pooled keep-alive sockets left open to the API (they would keep this
        // process alive for the API's keep-alive time after the last request).
        const upstream = httpRequest(
          { host: apiUrl.hostname, port: apiUrl.port, method: req.method, path: req.url, headers: { ...req.headers, host: apiUrl.host }, agent: false },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.on("error", () => {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        });
        // The page went away (offline, reload, closed): let go of a held live pull too.
        res.on("close", () => upstream.destroy());
        req.pipe(upstream);
        return;
      }
      if (url.pathname === "/token") {
        res.writeHead(200, { "Content-Type": "text/plain", "Cache-Control": "no-store" }).end(mintToken(jwtSecret, url.searchParams.get("user") ?? "demo"));
        return;
      }
      if (url.pathname === "/precache.json") {
        const files = ["/", "/app.js", "/style.css", ...(await sdkFiles())];
        res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(files));
        return;
      }
      const path = url.pathname === "/" ? "/index.html" : url.pathname;
      const file = path.startsWith("/sdk/") ? join(DIST, normalize(path.slice(5))) : join(HERE, normalize(path));
      if (!file.startsWith(DIST) && !file.startsWith(HERE)) throw Object.assign(new Error("no"), { code: "ENOENT" });
      const body = await readFile(file);
      res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Cache-Control": "no-cache" }).end(body);
    } catch (error) {
      res.writeHead(error?.code === "ENOENT" ? 404 : 500).end();
    }
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    url: `http://${host}:${address.port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const at = process.argv.indexOf(`--${name}`);
    return at > 0 ? process.argv[at + 1] : fallback;
  };
  const jwtSecret = arg("jwt-secret", process.env.JWT_SECRET);
  if (!jwtSecret) throw new Error("--jwt-secret (or JWT_SECRET) is required");
  const { url } = await startServer({ api: arg("api", "http://127.0.0.1:8000"), jwtSecret, port: Number(arg("port", "5173")) });
  console.log(`web-todo on ${url}/?user=alice`);
}
