// Opens a server's /docs page (Swagger UI) in headless Chromium through playwright-core,
// lists the operations it shows, and runs one "Try it out" call.
//
//   node docs_page.js --url http://127.0.0.1:PORT --chromium /usr/bin/chromium
//        --profile DIR --op "GET /v1/users/{id}" --param id=1 [--screenshot FILE]
//
// Prints one JSON line: {"operations": [...], "status": "200", "body": "...", "errors": [...]}
import { chromium } from "playwright-core";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    profile: { type: "string" },
    op: { type: "string" },
    param: { type: "string", multiple: true, default: [] },
    screenshot: { type: "string" },
    timeout: { type: "string", default: "20000" },
  },
});
const timeout = Number(args.timeout);

const context = await chromium.launchPersistentContext(args.profile, {
  executablePath: args.chromium,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
const errors = [];
const external = [];
try {
  const page = await context.newPage();
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("request", (req) => {
    if (!req.url().startsWith(args.url)) external.push(req.url());
  });
  await page.goto(args.url + "/docs", { timeout });
  await page.waitForSelector(".opblock", { timeout });
  const operations = await page.$$eval(".opblock-summary", (nodes) =>
    nodes.map((n) => {
      const method = n.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "";
      const path = n.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
      return `${method} ${path}`;
    }),
  );
  const [verb, path] = args.op.split(" ");
  const block = page.locator(`.opblock-${verb.toLowerCase()}`).filter({
    has: page.locator(`.opblock-summary-path[data-path="${path}"]`),
  });
  await block.locator(".opblock-summary").first().click();
  await block.locator("button.try-out__btn").click({ timeout });
  for (const item of args.param) {
    const [name, value] = item.split("=");
    await block.locator(`tr[data-param-name="${name}"] input`).fill(value);
  }
  await block.locator("button.execute").click({ timeout });
  const status = block.locator(".live-responses-table .response .response-col_status");
  await status.first().waitFor({ timeout });
  const code = (await status.first().textContent()).trim();
  const body = await block
    .locator(".live-responses-table .response-col_description pre")
    .first()
    .textContent();
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: false });
  console.log(JSON.stringify({ operations, status: code, body, errors, external }));
} finally {
  await context.close();
}
