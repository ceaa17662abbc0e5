// Opens WebSockets from headless Chromium (Debian's, at /usr/bin/chromium or $CHROMIUM) to
// ringstream routes that offer permessage-deflate, for tests/deflate.rs:
//
//   node tests/dashboard/websocket.mjs PAGE_URL ECHO_URL TOPIC_URL
//
// From a page of the server (PAGE_URL), it sends a JSON text of about 6 KB to the echo route
// and waits for it back, then opens two members of a topic and publishes the same text from one
// to the other. It prints one line, `RESULT {...}`: the extensions each socket agreed (as the
// browser reports them) and whether each message came back whole; or `RESULT {"error": ...}`.
import { launchChromium } from './launch.mjs';

const [pageUrl, echoUrl, topicUrl] = process.argv.slice(2);
if (!topicUrl) {
  console.error('usage: node websocket.mjs PAGE_URL ECHO_URL TOPIC_URL');
  process.exit(2);
}
const PATIENCE_MS = 15000;

const browser = await launchChromium();

let result;
try {
  const page = await browser.newPage();
  await page.goto(pageUrl);
  result = await page.evaluate(async ([echoUrl, topicUrl, patience]) => {
    const open = (url) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('could not open ' + url));
    });
    const next = (ws) => new Promise((resolve, reject) => {
      ws.onmessage = (event) => resolve(event.data);
      ws.onclose = (event) => reject(new Error('closed ' + event.code + ' ' + event.reason));
    });
    const run = async () => {
      const items = Array.from({ length: 150 }, (_, i) => ({ id: i, name: 'item ' + i, ok: true }));
      const text = JSON.stringify({ items });
      const echo = await open(echoUrl);
      const echoed = next(echo);
      echo.send(text);
      const echoOk = (await echoed) === text;
      const member = await open(topicUrl);
      const publisher = await open(topicUrl);
      const delivered = next(member);
      publisher.send(text);
      const topicOk = (await delivered) === text;
      return {
        echo_extensions: echo.extensions,
        echo_ok: echoOk,
        topic_extensions: member.extensions,
        topic_ok: topicOk,
        length: text.length,
      };
    };
    const late = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), patience));
    try {
      return await Promise.race([run(), late]);
    } catch (error) {
      return { error: String(error) };
    }
  }, [echoUrl, topicUrl, PATIENCE_MS]);
} catch (error) {
  result = { error: String(error?.stack ?? error) };
}
await browser.close();
console.log('RESULT ' + JSON.stringify(result));
process.exit(result.error ? 1 : 0);
