// The live status page in a real browser (Debian's headless Chromium through playwright-core),
// on a coordinator training with two worker processes: both workers show by name, the step
// counter and the loss chart advance, a worker SIGKILLed mid-run turns to lost with its name, a
// stop with the wrong secret changes nothing and with the right one ends the run after a
// checkpoint, and the page asks for nothing outside the coordinator. The test's screenshot is
// docs/images/status-page.png when WEFT_UPDATE_SCREENSHOT=1. Skipped, saying why, without
// /usr/bin/chromium (apt-get install chromium).

import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, expect, it } from 'vitest';
import { ROOT, startCli, startWorker } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { writeTinyConfig } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const CHROMIUM = '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);
if (missing)
  console.log(`status page browser test skipped: no ${CHROMIUM} (apt-get install chromium)`);

const dir = tempDir('weft-page-');
let browser: Browser | undefined;
afterAll(async () => browser?.close());

/** The number in the page's element `selector` (e.g. "12 / 3000" -> 12). */
async function numberIn(page: Page, selector: string, attribute?: string): Promise<number> {
  const el = page.locator(selector);
  const text = attribute ? await el.getAttribute(attribute) : await el.textContent();
  return Number.parseInt(text ?? '', 10) || 0;
}

it.skipIf(missing)(
  'shows the workers, the advancing step and loss, a lost worker, and takes a stop only with the secret',
  async () => {
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const token = join(dir, 'token');
    writeFileSync(token, 'the page test secret\n', { mode: 0o600 });
    const long = { steps: 5000, evalEvery: 50, logEvery: 100 };
    const config = writeTinyConfig(join(dir, 'long.json'), long);
    const coordinator = startCli([
      'coordinator',
      '--listen',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
      '--token-file',
      token,
      '--config',
      config,
      '--data',
      join(ROOT, 'data/tinyshakespeare.txt'),
      '--out',
      join(dir, 'run'),
      '--backend',
      'reference',
    ]);
    await coordinator.waitFor(/status page: http/);
    const env = { WEFT_TOKEN_FILE: token };
    startWorker(`127.0.0.1:${port}`, 'alpha', env);
    const beta = startWorker(`127.0.0.1:${port}`, 'beta', env);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu'],
    });
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${origin}/`);
    await page.locator('[data-worker="alpha"]').waitFor({ timeout: 60_000 });
    await page.locator('[data-worker="beta"]').waitFor({ timeout: 60_000 });
    await expect.poll(() => numberIn(page, '#step'), { timeout: 60_000 }).toBeGreaterThan(60);

    // the counter and the chart move while training runs
    const step = await numberIn(page, '#step');
    const points = await numberIn(page, '#loss-chart', 'data-points');
    await expect.poll(() => numberIn(page, '#step'), { timeout: 30_000 }).toBeGreaterThan(step);
    await expect
      .poll(() => numberIn(page, '#loss-chart', 'data-points'), { timeout: 30_000 })
      .toBeGreaterThan(points);
    expect(await page.locator('#loss-chart svg path').count()).toBeGreaterThan(0);
    const shot = await page.screenshot({ fullPage: true });
    if (process.env.WEFT_UPDATE_SCREENSHOT === '1')
      writeFileSync(join(ROOT, 'docs/images/status-page.png'), shot);

    // a worker killed mid-run: its card says lost, with its name; training goes on
    beta.child.kill('SIGKILL');
    const lost = page.locator('[data-worker="beta"][data-state="lost"]');
    await lost.waitFor({ timeout: 30_000 });
    expect(await lost.textContent()).toMatch(/beta.*rank \d/s);
    expect(await page.locator('[data-worker="alpha"]').getAttribute('data-state')).toBe('ready');
    const after = await numberIn(page, '#step');
    await expect.poll(() => numberIn(page, '#step'), { timeout: 30_000 }).toBeGreaterThan(after);

    // a stop: refused without the right secret, taken with it
    await page.locator('#secret').fill('not the secret');
    await page.locator('#stop-form button').click();
    await expect.poll(() => page.locator('#stop-result').textContent()).toMatch(/wrong/);
    expect(await page.locator('#phase').textContent()).toMatch(/^(training|evaluating)$/);
    await page.locator('#secret').fill('the page test secret');
    await page.locator('#stop-form button').click();
    await expect.poll(() => page.locator('#stop-result').textContent()).toMatch(/stopping/);
    expect(await coordinator.exited, coordinator.output()).toBe(0);
    expect(coordinator.output()).toMatch(/stopped at step \d+; checkpoint saved/);
    expect(coordinator.output()).toMatch(/worker beta \(rank \d\) lost/);

    // everything the page loaded came from the coordinator
    expect(requests.length).toBeGreaterThan(4);
    expect(requests.filter((url) => !url.startsWith(`${origin}/`))).toEqual([]);
  },
  180_000,
);
