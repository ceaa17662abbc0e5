// Drives headless Chromium (Debian's, at /usr/bin/chromium or $CHROMIUM) through the
// dashboard for tests/dashboard.rs, and takes the README's screenshot.
//
//   node tests/dashboard/check.mjs URL [--screenshot PATH]
//
// 1. Loads URL and waits until the page shows live numbers (two samples, so rates too), then
//    prints `READY {...}` (what the page shows) on stdout.
// 2. Waits for one line on stdin: `LOADED {...}`, the least the page must now show
//    (min_connections, min_handshakes, min_messages_in, refusal: a status, client: an address,
//    transfer: true), while the test keeps its load going.
// 3. Polls the page until it shows all of it and a message rate above 0, then prints
//    `PASSED {...}`; or `FAILED reason {...}` after 20 s. Any console error, page error or
//    failed request fails the run too. Exit code 0 only for PASSED.
import { launchChromium } from './launch.mjs';
import { createInterface } from 'node:readline';

const [url, ...rest] = process.argv.slice(2);
const screenshot = rest[0] === '--screenshot' ? rest[1] : null;
if (!url) {
  console.error('usage: node check.mjs URL [--screenshot PATH]');
  process.exit(2);
}
const PATIENCE_MS = 20000;

const problems = [];
const browser = await launchChromium();

async function main() {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push('console error: ' + message.text());
  });
  page.on('pageerror', (error) => problems.push('page error: ' + error.message));
  page.on('requestfailed', (request) => {
    problems.push('request failed: ' + request.url() + ' ' + (request.failure()?.errorText ?? ''));
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push('HTTP ' + response.status() + ': ' + response.url());
  });

  const shown = () => page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent ?? '';
    const count = (id) => Number(text(id).replace(/[^0-9.]/g, '')) || 0;
    const cells = (id) => [...document.querySelectorAll('#' + id + ' td:not(.empty)')].map((td) => td.textContent);
    return {
      status: text('status'),
      connections: count('v-connections'),
      handshakes: count('t-handshakes'),
      messages_in: count('t-messages-in'),
      messages_in_rate: text('v-messages-in'),
      workers: document.querySelectorAll('#workers tr td:not(.empty)').length / 3,
      refusals: cells('refusals'),
      clients: cells('clients-connections'),
      transfers: cells('transfers'),
    };
  });

  await page.goto(url);
  let before = null;
  const start = Date.now();
  while (Date.now() - start < PATIENCE_MS) {
    const now = await shown();
    if (now.status === 'live' && now.messages_in_rate !== '–') {
      before = now;
      break;
    }
    await page.waitForTimeout(100);
  }
  if (!before) return ['the page never showed live numbers', await shown()];
  console.log('READY ' + JSON.stringify(before));

  const lines = createInterface({ input: process.stdin });
  const line = await new Promise((resolve) => lines.once('line', resolve));
  lines.close();
  const want = JSON.parse(line.replace(/^LOADED /, ''));
  const unmet = (now) => {
    const missing = [];
    if (now.status !== 'live') missing.push('status ' + now.status);
    if (now.connections < (want.min_connections ?? 0)) missing.push('connections');
    if (now.handshakes < (want.min_handshakes ?? 0)) missing.push('handshakes');
    if (now.messages_in < (want.min_messages_in ?? 0)) missing.push('messages in');
    if (!(Number(now.messages_in_rate.replace(/[^0-9.]/g, '')) > 0)) missing.push('message rate');
    if (want.refusal && !now.refusals.includes(want.refusal)) missing.push('refusal ' + want.refusal);
    if (want.client && !now.clients.includes(want.client)) missing.push('client ' + want.client);
    if (want.transfer && !now.transfers.some((cell) => cell.includes('down'))) missing.push('transfer');
    if (now.messages_in <= before.messages_in) missing.push('messages did not move');
    return missing;
  };
  const loaded = Date.now();
  let now = await shown();
  while (unmet(now).length > 0 && Date.now() - loaded < PATIENCE_MS) {
    await page.waitForTimeout(200);
    now = await shown();
  }
  const missing = unmet(now);
  if (missing.length > 0) return ['the page does not show: ' + missing.join(', '), now];
  if (screenshot) await page.screenshot({ path: screenshot });
  return [null, now];
}

let outcome;
try {
  outcome = await main();
} catch (error) {
  outcome = ['the check failed: ' + (error?.stack ?? error), null];
}
await browser.close();
const [failure, now] = outcome;
if (failure || problems.length > 0) {
  console.log('FAILED ' + [failure, ...problems].filter(Boolean).join('; ') + ' ' + JSON.stringify(now));
  process.exit(1);
}
console.log('PASSED ' + JSON.stringify(now));
