// Copies the pristine prebuilt OHIF dist into the served tree and rewrites its hard-coded public path "/"
// to a sub-path such as "/ohif/". Every rewrite must change something: a new OHIF release that moved a
// string fails here, loudly, instead of serving a viewer that loads nothing.
// Usage: node tools/prepare-ohif.mjs <ohif-dist> <out-dir> <public-path>
import fs from 'node:fs';
import path from 'node:path';

const [source, out, publicPathArg] = process.argv.slice(2);
if (!source || !out || !publicPathArg) {
  console.error('usage: prepare-ohif.mjs <ohif-dist> <out-dir> <public-path>');
  process.exit(2);
}
const base = `/${publicPathArg.replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/');
if (!/^\/([A-Za-z0-9._-]+\/)*$/.test(base)) {
  console.error(`prepare-ohif: bad public path ${JSON.stringify(publicPathArg)}`);
  process.exit(2);
}

fs.rmSync(out, { recursive: true, force: true });
fs.cpSync(source, out, { recursive: true, filter: src => !src.endsWith('.unpacked') });

const topLevel = ext => fs.readdirSync(out).filter(name => name.endsWith(ext)).map(name => path.join(out, name));

// Each rule: which files, what to replace, and the least number of files it must change.
const rules = [
  { name: 'index.html PUBLIC_URL', files: [path.join(out, 'index.html')], from: 'window.PUBLIC_URL="/"', to: `window.PUBLIC_URL="${base}"` },
  { name: 'index.html href', files: [path.join(out, 'index.html')], from: 'href="/', to: `href="${base}` },
  { name: 'index.html src', files: [path.join(out, 'index.html')], from: 'src="/', to: `src="${base}` },
  // Browsers fetch the web-app manifest without credentials unless told: behind Orthanc's basic auth it is a 401.
  { name: 'index.html manifest credentials', files: [path.join(out, 'index.html')], from: '<link rel="manifest" ', to: '<link rel="manifest" crossorigin="use-credentials" ' },
  { name: 'index.html meta content', files: [path.join(out, 'index.html')], from: 'content="/assets/', to: `content="${base}assets/`, optional: true },
  { name: 'webpack public path', files: topLevel('.js'), from: '__webpack_require__.p = "/";', to: `__webpack_require__.p = "${base}";`, mustInclude: /^app\.bundle\./ },
  { name: 'CSS url(/...)', files: topLevel('.css'), from: 'url(/', to: `url(${base}` },
  { name: 'manifest.json icons', files: [path.join(out, 'manifest.json')], from: '"/assets/', to: `"${base}assets/` },
];

if (base === '/') {
  console.log('prepare-ohif: public path is "/": nothing to rewrite');
  process.exit(0);
}

let failed = false;
for (const rule of rules) {
  const changed = [];
  let count = 0;
  for (const file of rule.files) {
    if (!fs.existsSync(file)) {
      continue;
    }
    const text = fs.readFileSync(file, 'utf8');
    const parts = text.split(rule.from);
    if (parts.length > 1) {
      fs.writeFileSync(file, parts.join(rule.to));
      changed.push(path.basename(file));
      count += parts.length - 1;
    }
  }
  const missingRequired = rule.mustInclude && !changed.some(name => rule.mustInclude.test(name));
  if ((!count && !rule.optional) || missingRequired) {
    console.error(`prepare-ohif: rewrite "${rule.name}" matched nothing${missingRequired ? ` in ${rule.mustInclude}` : ''}: ` +
      `${JSON.stringify(rule.from)} is not in this OHIF build any more`);
    failed = true;
  } else {
    console.log(`prepare-ohif: ${rule.name}: ${count} in ${changed.length} file(s)`);
  }
}

// Leftovers that would still load from "/" (absolute root paths in index.html) mean a rule is missing.
const html = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
const leftover = html.match(/(?:href|src)="\/(?!\/)[^"]*"/g)?.filter(ref => !ref.includes(`"${base}`));
if (leftover?.length) {
  console.error(`prepare-ohif: index.html still loads from the root: ${leftover.join(', ')}`);
  failed = true;
}
if (failed) {
  fs.rmSync(out, { recursive: true, force: true });
  process.exit(1);
}
