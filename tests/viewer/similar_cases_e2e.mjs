// End-to-end check of the "Similar cases" panel in headless Chromium, against OHIF served by a real
// Orthanc with the CBMIR plugin. Driven by tests/viewer/test_viewer_e2e.py.
//
// Usage: node similar_cases_e2e.mjs <spec.json>
//   spec: {baseUrl, user, password, studyInstanceUid, filterLabel, screenshot, chromium, timeoutMs,
//          notIndexableStudyInstanceUid (optional: a study whose image the plugin refuses),
//          failureScreenshot (where to keep the page when a step fails),
//          explorerStudyId (optional: the Orthanc id of the study, to try Orthanc Explorer's button)}
// Prints one JSON line (prefixed "E2E-RESULT ") with what it saw; assertions are the caller's.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// playwright-core is a devDependency of the extension (never a downloaded browser: Debian's chromium).
const require = createRequire(path.join(here, '..', '..', 'viewer-extension', 'package.json'));
const { chromium } = require('playwright-core');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = spec.timeoutMs || 60000;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cbmir-e2e-profile-'));
const seen = { consoleErrors: [], pageErrors: [], steps: [] };
const step = name => {
  seen.steps.push(name);
  console.error(`e2e: ${name}`);
};

const context = await chromium.launchPersistentContext(profile, {
  executablePath: spec.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run'],
  httpCredentials: { username: spec.user, password: spec.password },
  viewport: { width: 1400, height: 900 },
});
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(timeout);
  page.on('console', message => {
    if (message.type() === 'error') {
      seen.consoleErrors.push(message.text().slice(0, 300));
    }
  });
  page.on('pageerror', error => seen.pageErrors.push(String(error?.message || error).slice(0, 300)));

  // Which studies' frames the viewer fetched (WADO-RS), to prove what is on screen.
  const framesOf = new Set(); // since the compare click
  const framesEver = new Set(); // since the page opened (the viewer caches what it already fetched)
  page.on('request', request => {
    const match = /\/dicom-web\/studies\/([0-9.]+)\/series\/[0-9.]+\/instances\/[0-9.]+\/frames\//.exec(request.url());
    if (match) {
      framesOf.add(match[1]);
      framesEver.add(match[1]);
    }
  });

  step('open the study');
  await page.goto(`${spec.baseUrl}/ohif/viewer?StudyInstanceUIDs=${spec.studyInstanceUid}`);
  await page.waitForSelector('.viewport-element canvas, [data-cy=viewport-pane] canvas');
  await _skipTour(page);

  step('the panel opens on its own for an indexed study');
  const panel = page.locator('[data-testid=cbmir-panel]');
  seen.openedOnLoad = await panel
    .waitFor({ timeout: 30000 })
    .then(() => true)
    .catch(() => false);
  if (!seen.openedOnLoad) {
    await page.click('[data-cy=similarCases-btn]');
    await panel.waitFor();
  }
  seen.panelTab = await page.$$eval('[data-cy=similarCases-btn]', tabs => ({
    count: tabs.length,
    svg: tabs.some(tab => tab.querySelector('svg')),
  }));
  seen.panelTitle = await page.locator('.cbmir-title').innerText();
  await page.waitForSelector('[data-testid=cbmir-panel][data-state=results] [data-testid=cbmir-result]');
  await _thumbnailsLoaded(page);
  seen.results = await _results(page);
  seen.summary = await page.locator('[data-testid=cbmir-summary]').innerText();
  seen.excludeSamePatientDefault = await page.locator('[data-testid=cbmir-exclude-same-patient]').isChecked();

  step('screenshot');
  await _skipTour(page);
  fs.mkdirSync(path.dirname(spec.screenshot), { recursive: true });
  await page.screenshot({ path: spec.screenshot });

  step('scroll to another slice');
  const from = await panel.getAttribute('data-query-sop');
  const box = await page.locator('.viewport-element').first().boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 120);
  await page.waitForFunction(
    sop => {
      const root = document.querySelector('[data-testid=cbmir-panel]');
      return root && root.dataset.querySop && root.dataset.querySop !== sop && root.dataset.state === 'results';
    },
    from
  );
  seen.scrolled = {
    from,
    to: await panel.getAttribute('data-query-sop'),
    results: await page.locator('[data-testid=cbmir-result]').count(),
  };

  if (spec.filterLabel) {
    step(`filter on ${spec.filterLabel}`);
    await page.selectOption('[data-testid=cbmir-label-filter]', spec.filterLabel);
    await page.waitForFunction(label => {
      const root = document.querySelector('[data-testid=cbmir-panel]');
      const cards = [...document.querySelectorAll('[data-testid=cbmir-result]')];
      return root?.dataset.state === 'results' && cards.length && cards.every(c => c.dataset.label === label);
    }, spec.filterLabel);
    seen.filtered = await _results(page);
    seen.filteredSummary = {
      text: await page.locator('[data-testid=cbmir-summary]').innerText(),
      filtered: await page.locator('[data-testid=cbmir-summary]').getAttribute('data-filtered'),
    };
    if (spec.filterScreenshot) {
      await page.locator('[data-testid=cbmir-panel]').screenshot({ path: spec.filterScreenshot });
    }
    await page.selectOption('[data-testid=cbmir-label-filter]', '');
    await page.waitForSelector('[data-testid=cbmir-panel][data-state=results][data-query-sop]');
    await page.waitForFunction(() => document.querySelector('[data-testid=cbmir-summary]')?.dataset.filtered === 'false');
  }

  step('compare the first result beside the study');
  const first = page.locator('[data-testid=cbmir-result]').first();
  const target = await first.getAttribute('data-study-instance-uid');
  const targetSop = await first.getAttribute('data-sop-instance-uid');
  const readingSop = await panel.getAttribute('data-query-sop');
  framesOf.clear();
  await first.locator('[data-testid=cbmir-open]').click();
  await page.waitForFunction(
    ([a, b]) => new URL(location.href).searchParams.get('StudyInstanceUIDs') === `${a},${b}`,
    [spec.studyInstanceUid, target]
  );
  await page.waitForFunction(
    () => [...document.querySelectorAll('.viewport-element')].filter(v => v.querySelector('canvas')).length >= 2
  );
  // The panel must still be there (asserted by the caller): wait for it, but do not stop here.
  await page
    .waitForFunction(() => !!document.querySelector('[data-testid=cbmir-compare]'), null, { timeout: 20000 })
    .catch(() => {});
  const framesBoth = Date.now() + timeout;
  while (!(framesEver.has(spec.studyInstanceUid) && framesOf.has(target)) && Date.now() < framesBoth) {
    await page.waitForTimeout(250);
  }
  await _skipTour(page);
  // The panel answers for the slice on screen in the active (left) viewport: the slice being read.
  await page
    .waitForFunction(
      () => {
        const root = document.querySelector('[data-testid=cbmir-panel]');
        return root?.dataset.querySop && root.dataset.state === 'results';
      },
      null,
      { timeout: 20000 }
    )
    .catch(() => {});
  seen.compare = {
    target,
    targetSop,
    readingSop,
    querySop: (await panel.count()) ? await panel.getAttribute('data-query-sop') : null,
    url: page.url(),
    viewports: await page.$$eval('.viewport-element', vs => vs.filter(v => v.querySelector('canvas')).length),
    framesOf: [...framesOf],
    framesEver: [...framesEver],
    viewportText: await page.$$eval('.viewport-element', vs => vs.map(v => (v.closest('[data-viewportid]') || v).innerText.slice(0, 300))),
    panelOpen: (await panel.count()) > 0,
    compareBar: (await page.locator('[data-testid=cbmir-compare]').count())
      ? await page.locator('[data-testid=cbmir-compare]').getAttribute('data-study-instance-uid')
      : null,
    comparedCard: await page.$$eval('[data-testid=cbmir-result][data-compared=true]', cs => cs.map(c => c.dataset.studyInstanceUid)),
  };
  if (spec.compareScreenshot) {
    await page.waitForSelector('[data-testid=cbmir-panel][data-state=results]', { timeout: 10000 }).catch(() => {});
    await page.screenshot({ path: spec.compareScreenshot });
  }

  if (seen.compare.compareBar) {
    step('one click back to the single study');
    await page.click('[data-testid=cbmir-back]');
    await page.waitForFunction(
      uid => new URL(location.href).searchParams.get('StudyInstanceUIDs') === uid,
      spec.studyInstanceUid
    );
    await page.waitForFunction(
      () => [...document.querySelectorAll('.viewport-element')].filter(v => v.querySelector('canvas')).length === 1
    );
    await page.waitForSelector('[data-testid=cbmir-panel]');
    seen.back = {
      url: page.url(),
      viewports: await page.$$eval('.viewport-element', vs => vs.filter(v => v.querySelector('canvas')).length),
      compareBar: await page.locator('[data-testid=cbmir-compare]').count(),
    };
  } else {
    seen.back = null; // no panel after Compare: the caller's assertions say so
  }

  if (spec.notIndexableStudyInstanceUid) {
    step('a study that cannot be indexed');
    await page.goto(`${spec.baseUrl}/ohif/viewer?StudyInstanceUIDs=${spec.notIndexableStudyInstanceUid}`);
    await page.waitForSelector('.viewport-element canvas, [data-cy=viewport-pane] canvas');
    await _skipTour(page);
    // Not indexed: the panel is not opened on its own (the check is asked and answered 422 quickly).
    await page.waitForTimeout(4000);
    const openedAlone = (await panel.count()) > 0;
    if (!openedAlone) {
      await page.click('[data-cy=similarCases-btn]');
    }
    await page.waitForSelector('[data-testid=cbmir-panel][data-state=notIndexable]');
    seen.notIndexable = {
      openedOnLoad: openedAlone,
      message: await page.locator('[data-testid=cbmir-message]').innerText(),
      results: await page.locator('[data-testid=cbmir-result]').count(),
    };
  }
  if (spec.explorerStudyId) {
    step("Orthanc Explorer's Open in OHIF button");
    await page.goto(`${spec.baseUrl}/app/explorer.html#study?uuid=${spec.explorerStudyId}`);
    const button = page.locator('#cbmir-open-ohif');
    await button.waitFor({ state: 'visible' });
    const [viewer] = await Promise.all([context.waitForEvent('page'), button.click()]);
    await viewer.waitForSelector('.viewport-element canvas, [data-cy=viewport-pane] canvas');
    seen.explorer = { openedUrl: viewer.url() };
    await viewer.close();
  }
  seen.ok = true;
} catch (error) {
  seen.ok = false;
  seen.error = String(error?.stack || error);
  try {
    const page = context.pages()[0];
    const failure = spec.failureScreenshot || path.join(os.tmpdir(), 'cbmir-e2e-failure.png');
    fs.mkdirSync(path.dirname(failure), { recursive: true });
    await page?.screenshot({ path: failure });
    seen.failureScreenshot = failure;
  } catch {
    // nothing more to keep
  }
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(`E2E-RESULT ${JSON.stringify(seen)}`);
process.exit(seen.ok ? 0 : 1);

async function _skipTour(page) {
  const skip = page.getByText('Skip all', { exact: true });
  if (await skip.count()) {
    await skip.first().click().catch(() => {});
  }
}

async function _thumbnailsLoaded(page) {
  await page
    .waitForFunction(
      () => [...document.querySelectorAll('[data-testid=cbmir-result] img')].every(img => img.complete && img.naturalWidth > 0),
      null,
      { timeout: 15000 }
    )
    .catch(() => {});
}

async function _results(page) {
  return page.$$eval('[data-testid=cbmir-result]', cards =>
    cards.map(card => ({
      label: card.dataset.label || null,
      studyInstanceUid: card.dataset.studyInstanceUid,
      sopInstanceUid: card.dataset.sopInstanceUid,
      hasOpen: !!card.querySelector('[data-testid=cbmir-open]'),
      thumbnailLoaded: !!card.querySelector('img') && card.querySelector('img').naturalWidth > 0,
      thumbnailSrc: card.querySelector('img')?.getAttribute('src') || '',
      score: Number(card.querySelector('[data-testid=cbmir-similarity]')?.dataset.score),
      percentile: Number(card.querySelector('[data-testid=cbmir-similarity]')?.dataset.percentile),
      similarityText: card.querySelector('[data-testid=cbmir-similarity]')?.textContent || '',
      similarityTooltip: card.querySelector('[data-testid=cbmir-similarity]')?.getAttribute('title') || '',
    }))
  );
}
