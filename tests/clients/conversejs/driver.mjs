// Drives headless Chromium for test_client_conversejs.py: one JSON command per stdin line,
// one JSON answer per stdout line. What to do and what to check is decided by the test.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
// The test talks to loopback servers only; the page must not reach anywhere else (converse.js's
// login screen shows logos from its web site, for one).
await page.route((url) => !['127.0.0.1', 'localhost'].includes(url.hostname),
                 (route) => route.abort('blockedbyclient'));
const console_lines = [];
page.on('console', (msg) => {
  if (!msg.text().includes('ERR_BLOCKED_BY_CLIENT')) console_lines.push(`${msg.type()}: ${msg.text()}`);
});
page.on('pageerror', (err) => console_lines.push(`pageerror: ${err.message}`));

const ops = {
  goto: ({ url }) => page.goto(url).then(() => null),
  fill: ({ selector, text }) => page.fill(selector, text),
  press: ({ selector, key }) => page.press(selector, key),
  click: ({ selector }) => page.click(selector),
  eval: ({ expression }) => page.evaluate(expression),
  screenshot: ({ path }) => page.screenshot({ path }).then(() => null),
  console: () => console_lines.splice(0),
};

console.log(JSON.stringify({ ready: true }));
for await (const line of createInterface({ input: process.stdin })) {
  const { op, ...args } = JSON.parse(line);
  if (op === 'quit') break;
  try {
    console.log(JSON.stringify({ value: (await ops[op](args)) ?? null }));
  } catch (err) {
    console.log(JSON.stringify({ error: String(err?.message ?? err) }));
  }
}
await browser.close();
