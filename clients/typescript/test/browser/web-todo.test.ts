/**
 * The example web app (examples/web-todo) in headless Chromium (Debian's /usr/bin/chromium,
 * driven by playwright-core; no browser download), against the real stack: two browser
 * contexts share a list; one goes offline, both edit, a reload while offline keeps the unsent
 * edits (IndexedDB), it comes back, and both show the same list.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { chromium, type Page } from "playwright-core";
import { addMember, eventually, newUser, stack } from "../support/env.js";
import { PACKAGE_ROOT } from "../support/stack.js";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"];

interface Item {
  title: string;
  done: boolean;
  pending: boolean;
}

async function items(page: Page): Promise<Item[]> {
  return page.$$eval("li[data-testid=todo]", (lis) =>
    lis.map((li) => ({
      title: li.querySelector(".title")?.textContent ?? "",
      done: li.classList.contains("done"),
      pending: (li.querySelector(".pending")?.textContent ?? "") !== "",
    })),
  );
}

const summary = (list: Item[]) => list.map((i) => `${i.title}${i.done ? " ✓" : ""}`).sort();

async function add(page: Page, title: string): Promise<void> {
  await page.fill("#title", title);
  await page.press("#title", "Enter");
  await page.waitForFunction((t) => Array.from(document.querySelectorAll("li .title")).some((e) => e.textContent === t), title);
}

test("web-todo: two browsers, one offline, both edit; a reload offline keeps unsent edits; back online both show the same list", { skip: !existsSync(CHROMIUM) && `no ${CHROMIUM}` }, async () => {
  const { url: api, jwtSecret } = stack();
  const serverModule = join(PACKAGE_ROOT, "examples", "web-todo", "serve.mjs");
  const { startServer } = (await import(serverModule)) as {
    startServer(o: { api: string; jwtSecret: string }): Promise<{ url: string; close(): Promise<void> }>;
  };
  const server = await startServer({ api, jwtSecret });
  const list = `team:${newUser("list")}`;
  const [alice, bob] = [newUser("alice"), newUser("bob")];
  await addMember(list, alice);
  await addMember(list, bob);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const [ctxA, ctxB] = [await browser.newContext(), await browser.newContext()];
    const [pageA, pageB] = [await ctxA.newPage(), await ctxB.newPage()];
    const errors: string[] = [];
    for (const page of [pageA, pageB]) page.on("pageerror", (e) => errors.push(String(e)));
    await pageA.goto(`${server.url}/?user=${alice}&list=${list}`);
    await pageB.goto(`${server.url}/?user=${bob}&list=${list}`);
    for (const page of [pageA, pageB]) {
      await page.waitForFunction(() => navigator.serviceWorker?.controller != null, undefined, { timeout: 15_000 });
    }

    await add(pageA, "milk");
    await eventually(async () => summary(await items(pageB)).includes("milk"), 15_000, "bob sees milk");

    await ctxB.setOffline(true);
    await add(pageB, "bread");
    await pageB.click("li[data-testid=todo]:has(.title:text-is('milk')) input[type=checkbox]");
    await add(pageA, "eggs");
    await eventually(async () => (await pageB.textContent("#status"))?.includes("offline") ?? false, 15_000, "bob's page says offline");

    // Reload while offline: the service worker serves the app, IndexedDB the unsent edits.
    await pageB.reload();
    await pageB.waitForFunction(() => document.querySelectorAll("li[data-testid=todo]").length >= 2);
    const offlineView = await items(pageB);
    assert.deepEqual(summary(offlineView), ["bread", "milk ✓"], "bob's unsent edits survived the reload");
    assert.ok(offlineView.every((i) => i.pending), "and are marked unsent");
    assert.ok(!summary(await items(pageA)).includes("bread"), "alice has not seen them yet");
    // The committed screenshots in docs/ are refreshed with UPDATE_SCREENSHOTS=1.
    const docs = join(PACKAGE_ROOT, process.env["UPDATE_SCREENSHOTS"] === "1" ? "docs" : "test-results");
    mkdirSync(docs, { recursive: true });
    await pageB.screenshot({ path: join(docs, "web-todo-offline.png") });

    await ctxB.setOffline(false);
    const expected = ["bread", "eggs", "milk ✓"];
    await eventually(async () => JSON.stringify(summary(await items(pageA))) === JSON.stringify(expected), 30_000, "alice's list");
    await eventually(async () => JSON.stringify(summary(await items(pageB))) === JSON.stringify(expected), 30_000, "bob's list");
    try {
      await eventually(async () => (await items(pageB)).every((i) => !i.pending), 15_000, "nothing unsent");
    } catch (error) {
      const state = await pageB.evaluate(() => {
        const w = window as unknown as { offgrid: { client: { status: unknown }; todos: { all(): unknown } } };
        return JSON.stringify({ status: w.offgrid.client.status, rows: w.offgrid.todos.all() });
      });
      throw new Error(`${String(error)}; bob's client: ${state}`);
    }
    await pageB.screenshot({ path: join(docs, "web-todo.png") });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.close();
  }
});
