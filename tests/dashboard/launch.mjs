// Headless Chromium as every browser check launches it: Debian's, at /usr/bin/chromium or
// $CHROMIUM, with the switches that keep it off the network it cannot reach (Playwright gives
// every launch a fresh, empty profile directory).
import { chromium } from 'playwright-core';

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}
