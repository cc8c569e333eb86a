// Screenshots of the Temporal Web UI showing a running Sluice pipeline,
// taken with Debian's chromium driven by playwright-core (no browser
// download). Each page is shot once the text a user looks for is drawn,
// and the script fails, naming what is missing, when it never is.
//
//   node shoot.mjs UI_URL NAMESPACE WORKFLOW_ID OUT_DIR
import { chromium } from 'playwright-core';

const [ui, ns, wf, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1100 } });
  // shot opens url, clicks the tab named tab (if any), waits until every
  // text in want is on the page, and writes file.
  const shot = async (file, url, want, tab) => {
    await page.goto(url, { waitUntil: 'domcontentloaded' });
    if (tab) {
      await page.getByText(tab, { exact: true }).first().click({ timeout: 30000 });
    }
    for (const text of want) {
      if (!(await appears(text))) {
        console.error(`${file}: "${text}" never appeared on ${url}`);
        failed = true;
      }
    }
    await page.screenshot({ path: `${out}/${file}`, fullPage: true });
    console.log(`${out}/${file}`);
  };
  // appears waits up to 30 s for text in the page or any of its frames
  // (the UI renders the Markdown of the current details in an iframe).
  const appears = async (text) => {
    for (const deadline = Date.now() + 30000; Date.now() < deadline; ) {
      for (const frame of page.frames()) {
        if ((await frame.getByText(text, { exact: false }).count().catch(() => 0)) > 0) {
          return true;
        }
      }
      await page.waitForTimeout(250);
    }
    return false;
  };
  const base = `${ui}/namespaces/${ns}`;
  await shot('list.png', `${base}/workflows?query=${encodeURIComponent('SluiceState="Running"')}`, [wf]);
  // The workflow page's User Metadata tab: the static summary and the
  // current details, a table of connectors with their state.
  await shot('workflow.png', `${base}/workflows/${wf}`, ['numbers.c1', 'numbers.c2', 'Paused', 'Running', 'shows the live count'], 'User Metadata');
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
